"""Small synchronous client for Evolution API (WhatsApp gateway).

Design rule: a WhatsApp message must never be sent twice. So the client retries only when
the request provably was not processed (connection refused, connect timeout, 502/503/504
from a gateway) and reports ``maybe_sent=True`` when it cannot know (read timeout).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote

import httpx

from evolution import payloads
from evolution.classify import error_for
from evolution.errors import BODY_LIMIT, EvolutionError, EvolutionUnavailable

logger = logging.getLogger("evolution")

# A gateway/proxy answering these did not hand the request to Evolution: safe to retry.
RETRY_STATUSES = frozenset({502, 503, 504})
_REDACTED = "***"
# The states Evolution reports (Baileys' WAConnectionState, plus "refused" when the QR
# code was not scanned in time); only "open" can send.
CONNECTION_STATES = frozenset({"open", "connecting", "close", "refused"})
UNKNOWN_STATE = "unknown"
_MAYBE_SENT_ACTION = (
    "The message may have gone out: check the chat in WhatsApp before re-sending; then "
    "check that Evolution API is reachable at EVOLUTION_API_URL and answers in time."
)


@dataclass(frozen=True)
class SendResult:
    """What Evolution returned for an accepted send (HTTP 201)."""

    message_id: str
    status: str
    remote_jid: str
    raw: dict[str, Any] = field(default_factory=dict, compare=False, hash=False, repr=False)


@dataclass(frozen=True)
class ConnectionState:
    """The instance's WhatsApp connection, as ``/instance/connectionState`` reports it.

    ``state`` is "open", "connecting", "close" or "refused"; "unknown" when Evolution
    has no live session for the instance (it leaves the field out then).
    """

    instance: str
    state: str
    raw: dict[str, Any] = field(default_factory=dict, compare=False, hash=False, repr=False)

    @property
    def connected(self) -> bool:
        return self.state == "open"


class EvolutionClient:
    """Talks to one Evolution API instance over HTTP with the ``apikey`` header."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        instance: str,
        *,
        api_version: int = 2,
        connect_timeout: float = 5.0,
        read_timeout: float = 60.0,
        max_retries: int = 2,
        backoff: float = 0.2,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if api_version not in (1, 2):
            raise ValueError(f"api_version must be 1 or 2, got {api_version!r}")
        if not base_url:
            raise ValueError("base_url must not be empty")
        if not instance:
            raise ValueError("instance must not be empty")
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        self.base_url = base_url.rstrip("/")
        self.instance = instance
        self.api_version = api_version
        self.max_retries = max_retries
        self.backoff = backoff
        self._api_key = api_key
        self._http = httpx.Client(
            base_url=self.base_url,
            headers={"apikey": api_key, "Accept": "application/json"},
            timeout=httpx.Timeout(
                connect=connect_timeout,
                read=read_timeout,
                write=read_timeout,
                pool=connect_timeout,
            ),
            transport=transport,
            follow_redirects=False,
        )

    def __repr__(self) -> str:
        # Never show the api key.
        return (
            f"EvolutionClient(base_url={self.base_url!r}, instance={self.instance!r}, "
            f"api_version={self.api_version})"
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Release pooled connections."""
        self._http.close()

    # -- public API ---------------------------------------------------------------------

    def send_audio(
        self,
        number: str,
        url: str,
        *,
        delay: int | None = None,
        quoted: dict[str, Any] | None = None,
        encoding: bool | None = None,
    ) -> SendResult:
        """Send ``url`` as a voice note. With ``encoding`` true (Evolution's default, None)
        Evolution appends ``timestamp=`` to the URL before downloading and transcoding it,
        so the URL must tolerate extra query parameters; ``encoding=False`` for a URL that
        already serves Ogg Opus mono (``audio/ogg; codecs=opus``)."""
        body = payloads.audio_payload(
            number,
            url,
            api_version=self.api_version,
            delay=delay,
            quoted=quoted,
            encoding=encoding,
        )
        return self._send("sendWhatsAppAudio", body)

    def send_media(
        self,
        number: str,
        url: str,
        *,
        mediatype: str,
        mimetype: str,
        file_name: str,
        caption: str | None = None,
        delay: int | None = None,
        quoted: dict[str, Any] | None = None,
    ) -> SendResult:
        """Send ``url`` as image/video/document/audio file. ``file_name`` needs an extension:
        Evolution takes the mimetype from it and fails on documents without one."""
        body = payloads.media_payload(
            number,
            url,
            api_version=self.api_version,
            mediatype=mediatype,
            mimetype=mimetype,
            file_name=file_name,
            caption=caption,
            delay=delay,
            quoted=quoted,
        )
        return self._send("sendMedia", body)

    def get_base64_from_media_message(
        self, message_id: str, convert_to_mp4: bool = False
    ) -> dict[str, Any]:
        """Download a received media (by WhatsApp message id) as base64 through Evolution.

        Returns Evolution's dict: ``mediaType``, ``fileName``, ``mimetype``, ``base64``…
        """
        body = payloads.base64_payload(message_id, convert_to_mp4=convert_to_mp4)
        response = self._post(self._path("chat", "getBase64FromMediaMessage"), body)
        data = self._json_or_error(response)
        if not isinstance(data, dict) or "base64" not in data:
            raise EvolutionError(
                "Evolution API returned an unexpected body for getBase64FromMediaMessage",
                status_code=response.status_code,
                body=self._redact(response.text),
            )
        return data

    def connection_state(self) -> ConnectionState:
        """``GET /instance/connectionState/{instance}``: is the instance connected to
        WhatsApp? A send to one that is not fails with 500 "Connection Closed"."""
        response = self._request("GET", self._path("instance", "connectionState"))
        data = self._json_or_error(response)
        inner = data.get("instance") if isinstance(data, dict) else None
        if not isinstance(inner, dict):
            raise EvolutionError(
                "Evolution API returned an unexpected body for connectionState",
                status_code=response.status_code,
                body=self._redact(response.text),
            )
        state = inner.get("state")
        return ConnectionState(
            instance=str(inner.get("instanceName") or self.instance),
            state=state if isinstance(state, str) and state else UNKNOWN_STATE,
            raw=data,
        )

    # -- internals ----------------------------------------------------------------------

    def _path(self, group: str, action: str) -> str:
        return f"/{group}/{action}/{quote(self.instance, safe='')}"

    def _send(self, action: str, body: dict[str, Any]) -> SendResult:
        response = self._post(self._path("message", action), body)
        data = self._json_or_error(response)
        if not isinstance(data, dict):
            data = {}
        key = data.get("key")
        if not isinstance(key, dict):
            key = {}
        message_id = key.get("id")
        if not isinstance(message_id, str) or not message_id:
            # 2xx means Evolution accepted it: the message may well be out.
            raise EvolutionError(
                "Evolution API accepted the send but returned no key.id",
                status_code=response.status_code,
                body=self._redact(response.text),
                maybe_sent=True,
            )
        return SendResult(
            message_id=message_id,
            status=str(data.get("status") or ""),
            remote_jid=str(key.get("remoteJid") or ""),
            raw=data,
        )

    def _post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        return self._request("POST", path, body)

    def _request(
        self, method: str, path: str, body: dict[str, Any] | None = None
    ) -> httpx.Response:
        """Send with retries only where a duplicate message cannot result."""
        attempts = self.max_retries + 1
        for attempt in range(1, attempts + 1):
            started = time.monotonic()
            try:
                response = self._http.request(method, path, json=body)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                # The request never reached the server.
                self._log_failure(method, path, started, exc)
                if attempt < attempts:
                    self._wait_before_retry(attempt, type(exc).__name__)
                    continue
                raise EvolutionUnavailable(
                    f"Evolution API unreachable after {attempts} attempt(s): {type(exc).__name__}",
                    maybe_sent=False,
                ) from exc
            except httpx.PoolTimeout as exc:
                self._log_failure(method, path, started, exc)
                raise EvolutionUnavailable(
                    "No free connection to Evolution API (pool timeout)", maybe_sent=False
                ) from exc
            except httpx.TimeoutException as exc:
                # Read/write timeout: Evolution may be sending right now. Never retry.
                self._log_failure(method, path, started, exc)
                raise EvolutionUnavailable(
                    f"Evolution API did not answer in time ({type(exc).__name__}); "
                    "the message may have been sent",
                    maybe_sent=True,
                    action=_MAYBE_SENT_ACTION,
                ) from exc
            except httpx.TransportError as exc:
                # Connection dropped after the request was written: outcome unknown.
                self._log_failure(method, path, started, exc)
                raise EvolutionUnavailable(
                    f"Connection to Evolution API failed ({type(exc).__name__}); "
                    "the message may have been sent",
                    maybe_sent=True,
                    action=_MAYBE_SENT_ACTION,
                ) from exc

            elapsed_ms = (time.monotonic() - started) * 1000
            logger.info(
                "[EVOLUTION] %s %s -> %s in %.0f ms", method, path, response.status_code, elapsed_ms
            )
            if response.status_code in RETRY_STATUSES and attempt < attempts:
                self._wait_before_retry(attempt, f"HTTP {response.status_code}")
                continue
            return response
        raise AssertionError("unreachable")  # pragma: no cover

    def _wait_before_retry(self, attempt: int, reason: str) -> None:
        logger.warning("[EVOLUTION] retry %d/%d after %s", attempt, self.max_retries, reason)
        delay = self.backoff * (2 ** (attempt - 1))
        if delay > 0:
            time.sleep(delay)

    @staticmethod
    def _log_failure(method: str, path: str, started: float, exc: Exception) -> None:
        elapsed_ms = (time.monotonic() - started) * 1000
        logger.warning(
            "[EVOLUTION] %s %s failed after %.0f ms: %s",
            method,
            path,
            elapsed_ms,
            type(exc).__name__,
        )

    def _redact(self, text: str) -> str:
        if self._api_key:
            text = text.replace(self._api_key, _REDACTED)
        return text[:BODY_LIMIT]

    def _json_or_error(self, response: httpx.Response) -> Any:
        """Return the JSON of a 2xx answer, else raise the matching typed error."""
        status = response.status_code
        text = self._redact(response.text)
        if 200 <= status < 300:
            try:
                return response.json()
            except ValueError:
                raise EvolutionError(
                    f"Evolution API answered {status} with a non-JSON body",
                    status_code=status,
                    body=text,
                    maybe_sent=True,
                ) from None

        messages = tuple(self._redact(m) for m in _error_messages(response))
        detail = "; ".join(messages) or text.strip()[:200] or response.reason_phrase
        raise error_for(status, detail, instance=self.instance, body=text, messages=messages)


def _error_messages(response: httpx.Response) -> list[str]:
    """Evolution errors look like ``{"status", "error", "response": {"message": [...]}}``;
    ``message`` is a list, a string, or (number checks) a list of dicts."""
    try:
        data = response.json()
    except ValueError:
        return []
    if not isinstance(data, dict):
        return []
    inner = data.get("response")
    raw = inner.get("message") if isinstance(inner, dict) else data.get("message")
    if raw is None:
        return []
    items = raw if isinstance(raw, list) else [raw]
    return [item if isinstance(item, str) else json.dumps(item, sort_keys=True) for item in items]
