"""Extra details for ``/readyz`` from optional parts of the engine, shown beside the
checks and never counted in readiness (the WhatsApp gateway's connection state: a
replica serves links whether or not the gateway's instance is connected).

A registry in ``core`` because the parts that add a detail (``whatsapp``) may not import
``observability``, which reads them. A provider is called on the event loop: it must
answer at once (from a cache it refreshes elsewhere) and return a JSON-able dict, or
None for nothing to show.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

logger = logging.getLogger("mediacache")

DetailProvider = Callable[[], dict[str, Any] | None]
_PROVIDERS: dict[str, DetailProvider] = {}


def register_detail(name: str, provider: DetailProvider) -> None:
    """Show ``provider()``'s dict as ``details[name]`` in ``/readyz`` (replaces a
    provider of the same name)."""
    _PROVIDERS[name] = provider


def unregister_detail(name: str) -> None:
    _PROVIDERS.pop(name, None)


def readiness_details() -> dict[str, Any]:
    """Every provider's detail; one that fails shows its error, never raises."""
    details: dict[str, Any] = {}
    for name, provider in list(_PROVIDERS.items()):
        try:
            detail = provider()
        except Exception as exc:
            logger.warning("[HEALTH] readiness detail %s failed: %r", name, exc)
            detail = {"error": f"{type(exc).__name__}: {exc}"[:300]}
        if detail is not None:
            details[name] = detail
    return details
