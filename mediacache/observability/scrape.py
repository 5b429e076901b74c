"""``/metrics``: the Prometheus exposition, for a bearer token or a local scraper only.

Without ``METRICS_TOKEN`` only a *direct* loopback peer that sends no forwarding
header is answered (``curl localhost:8000/metrics`` inside the container or pod).
A request that came through a proxy carries ``X-Forwarded-For`` (or ``Forwarded``,
``X-Real-IP``), so however the proxy is configured, and whatever a client forges,
it is refused: a reverse proxy on the same machine never makes the internet
loopback. In production behind a proxy, set the token.
"""

from __future__ import annotations

import hmac
import ipaddress

from mediacache.core.asgi_types import Scope, Send
from mediacache.observability import metrics
from mediacache.observability.health import json_response

_FORWARDING = frozenset({b"x-forwarded-for", b"forwarded", b"x-real-ip"})


def metrics_allowed(scope: Scope, token: str) -> bool:
    """With METRICS_TOKEN set: that bearer token. Without: a direct loopback peer."""
    if token:
        for name, value in scope["headers"]:
            if name == b"authorization":
                return hmac.compare_digest(value, f"Bearer {token}".encode())
        return False
    return _direct_loopback(scope)


def _direct_loopback(scope: Scope) -> bool:
    client = scope.get("client")
    if not client:
        return False
    if any(name in _FORWARDING for name, _ in scope["headers"]):
        return False
    try:
        address = ipaddress.ip_address(client[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


async def metrics_endpoint(scope: Scope, send: Send, token: str) -> None:
    if not metrics_allowed(scope, token):
        refused = {"error": "metrics need METRICS_TOKEN, or a direct loopback client"}
        return await json_response(send, 403, refused)
    body, content_type = metrics.exposition()
    headers = [
        (b"content-type", content_type.encode()),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
    ]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
