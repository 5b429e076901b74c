"""The Evolution API client, built from settings.

A worker sends message after message: :func:`shared_evolution_client` keeps one client
(its connection pool, and the TLS context httpx builds at creation, some milliseconds)
per process and configuration instead of building one per send.
"""

from __future__ import annotations

import threading
from typing import Any

from django.conf import settings

from evolution import EvolutionClient


class GatewayNotConfigured(Exception):
    """EVOLUTION_API_URL (and its key and instance) are not set."""


def ensure_configured() -> dict:
    config = settings.EVOLUTION
    if not (config["API_URL"] and config["API_KEY"] and config["INSTANCE"]):
        raise GatewayNotConfigured(
            "Evolution API is not configured: set EVOLUTION_API_URL, EVOLUTION_API_KEY "
            "and EVOLUTION_INSTANCE"
        )
    return config


def evolution_client() -> EvolutionClient:
    config = ensure_configured()
    return EvolutionClient(
        config["API_URL"],
        config["API_KEY"],
        config["INSTANCE"],
        api_version=config["API_VERSION"],
        connect_timeout=config["CONNECT_TIMEOUT"],
        read_timeout=config["READ_TIMEOUT"],
        max_retries=config["MAX_RETRIES"],
    )


_shared: dict[tuple[Any, ...], EvolutionClient] = {}
_shared_lock = threading.Lock()


def shared_evolution_client() -> EvolutionClient:
    """This process's client for the current settings (thread-safe; never close it)."""
    config = ensure_configured()
    key = tuple(sorted((name, repr(value)) for name, value in config.items()))
    client = _shared.get(key)
    if client is None:
        with _shared_lock:
            client = _shared.get(key)
            if client is None:
                for stale in _shared.values():  # the settings changed: drop the old one
                    stale.close()
                _shared.clear()
                client = _shared[key] = evolution_client()
    return client
