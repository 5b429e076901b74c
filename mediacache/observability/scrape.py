"""``/metrics``: the Prometheus exposition, for a bearer token or loopback clients only."""

from __future__ import annotations

import hmac

from mediacache.core.asgi_types import Scope, Send
from mediacache.observability import metrics
from mediacache.observability.health import json_response

_LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})


def metrics_allowed(scope: Scope, token: str) -> bool:
    """With METRICS_TOKEN set: that bearer token. Without: loopback clients only."""
    if token:
        for name, value in scope["headers"]:
            if name == b"authorization":
                return hmac.compare_digest(value, f"Bearer {token}".encode())
        return False
    client = scope.get("client")
    if not client:
        return False
    return client[0] in _LOOPBACK


async def metrics_endpoint(scope: Scope, send: Send, token: str) -> None:
    if not metrics_allowed(scope, token):
        refused = {"error": "metrics need METRICS_TOKEN or a loopback client"}
        return await json_response(send, 403, refused)
    body, content_type = metrics.exposition()
    headers = [
        (b"content-type", content_type.encode()),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
    ]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
