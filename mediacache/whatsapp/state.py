"""Is the gateway's instance connected to WhatsApp? Evolution's
``GET /instance/connectionState/{instance}``, cached briefly per process.

A send to an instance that is not connected fails with a 500 that looks like anything
but that (EVOLUTION.md, trap 9), so ``/ops/`` and ``/readyz``'s details show the state
itself. Read with a short timeout and no retries, kept :data:`TTL` seconds (failures
too, so an unreachable Evolution costs one timeout per :data:`TTL`, not one per look).
``/readyz`` never waits for it: it shows what is cached and refreshes in the background.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from django.conf import settings

from evolution import EvolutionClient, EvolutionError, EvolutionUnavailable
from evolution.client import UNKNOWN_STATE

logger = logging.getLogger("mediacache.whatsapp")

TTL = 30.0
TIMEOUT = 3.0
NOT_CONFIGURED = "not configured"
UNREACHABLE = "unreachable"
CHECKING = "checking"

# What an operator should do about each state that cannot send.
_ACTIONS = {
    "connecting": "Evolution is connecting the instance; if it stays so, scan the QR code "
    "again (Evolution's manager, or GET /instance/connect/{instance}).",
    "close": "Connect the instance to WhatsApp: Evolution's manager, or GET "
    "/instance/connect/{instance} and scan the QR code. Sends fail until it is open.",
    "refused": "The QR code was not scanned in time: GET /instance/connect/{instance} and "
    "scan the new one.",
    UNKNOWN_STATE: "Evolution has no session for the instance (restarted, never connected): "
    "GET /instance/connect/{instance} and scan the QR code.",
}


@dataclass(frozen=True)
class GatewayState:
    """The instance's connection as last read: ``state`` is Evolution's ("open",
    "connecting", "close", "refused"), "unknown" (no session), "unreachable" or "error"
    (``error`` says why), or "not configured"."""

    instance: str
    state: str
    checked_at: float = 0.0  # Unix time of the read
    error: str = ""
    action: str = ""

    @property
    def connected(self) -> bool:
        return self.state == "open"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"connected": self.connected}


def _config() -> Mapping[str, Any]:
    return getattr(settings, "EVOLUTION", {}) or {}


def _key(config: Mapping[str, Any]) -> tuple[str, str, str, int] | None:
    """Which gateway the settings name; None when they name none."""
    if not (config.get("API_URL") and config.get("API_KEY") and config.get("INSTANCE")):
        return None
    return (
        str(config["API_URL"]),
        str(config["API_KEY"]),
        str(config["INSTANCE"]),
        int(config.get("API_VERSION", 2)),
    )


def read_state(url: str, api_key: str, instance: str, api_version: int = 2) -> GatewayState:
    """Ask Evolution now (one request, :data:`TIMEOUT`); errors become a state, named."""
    now = time.time()
    try:
        with EvolutionClient(
            url,
            api_key,
            instance,
            api_version=api_version,
            connect_timeout=TIMEOUT,
            read_timeout=TIMEOUT,
            max_retries=0,
        ) as client:
            state = client.connection_state().state
    except EvolutionError as exc:
        logger.warning("[CHAT] could not read the gateway's connection state: %s", exc)
        return GatewayState(
            instance=instance,
            state=UNREACHABLE if isinstance(exc, EvolutionUnavailable) else "error",
            checked_at=now,
            error=f"{type(exc).__name__}: {exc}"[:300],
            action=exc.action,
        )
    action = _ACTIONS.get(state, "").replace("{instance}", instance)
    return GatewayState(instance=instance, state=state, checked_at=now, action=action)


class StateCache:
    """The last state read per gateway, for :data:`TTL` seconds; one read at a time."""

    def __init__(self, ttl: float = TTL) -> None:
        self.ttl = ttl
        self._states: dict[tuple[str, str, str, int], tuple[float, GatewayState]] = {}
        self._lock = threading.Lock()
        self._reading: set[tuple[str, str, str, int]] = set()

    def clear(self) -> None:
        with self._lock:
            self._states.clear()

    def forget(self, url: str, instance: str) -> None:
        """Drop what is known of ``instance`` at ``url``: a send just said otherwise."""
        with self._lock:
            for key in [k for k in self._states if (k[0].rstrip("/"), k[2]) == (url, instance)]:
                del self._states[key]

    def get(self, key: tuple[str, str, str, int], *, wait: bool) -> GatewayState | None:
        """The cached state if fresh; else read it (``wait``), or start a read in the
        background and answer the stale one (None when there is none yet)."""
        with self._lock:
            cached = self._states.get(key)
            if cached is not None and time.monotonic() - cached[0] < self.ttl:
                return cached[1]
            start = key not in self._reading
            if start:
                self._reading.add(key)
        if not start:  # another thread is reading it
            return cached[1] if cached else None
        if wait:
            return self._read(key)
        threading.Thread(target=self._read, args=(key,), name="gateway-state", daemon=True).start()
        return cached[1] if cached else None

    def _read(self, key: tuple[str, str, str, int]) -> GatewayState | None:
        state = None
        try:
            state = read_state(*key)
        finally:
            with self._lock:
                if state is not None:
                    self._states[key] = (time.monotonic(), state)
                self._reading.discard(key)
        return state


CACHE = StateCache()


def gateway_state() -> GatewayState:
    """The configured instance's connection, read now if the cached one is older than
    :data:`TTL` (waits up to :data:`TIMEOUT`): for pages."""
    key = _key(_config())
    if key is None:
        return GatewayState(instance="", state=NOT_CONFIGURED)
    state = CACHE.get(key, wait=True)
    return state or GatewayState(instance=key[2], state=CHECKING)


def readiness_detail() -> dict[str, Any] | None:
    """``/readyz``'s ``details.gateway``: never waits (the cached state, refreshed in the
    background); None when no gateway is configured."""
    key = _key(_config())
    if key is None:
        return None
    state = CACHE.get(key, wait=False) or GatewayState(instance=key[2], state=CHECKING)
    return state.as_dict()
