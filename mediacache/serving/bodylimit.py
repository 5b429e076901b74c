"""A request-body limit that answers 413 before an oversized upload is spooled."""

from __future__ import annotations

from mediacache.core.asgi_types import ASGIApp, Message, Receive, Scope, Send

_TOO_LARGE = b'{"error": "upload too large"}'


class BodySizeLimit:
    """413 for request bodies over ``limit`` bytes, checked while they stream in.

    Django's ASGI handler reads the whole body before the view runs; without this
    an oversized upload would be spooled to disk in full before being refused.
    Only paths under ``prefixes`` are limited (default: all): inside a host project
    the host's other routes keep their own rules.
    """

    def __init__(self, app: ASGIApp, limit: int, *, prefixes: tuple[str, ...] = ("/",)) -> None:
        self.app = app
        self.limit = limit
        self.prefixes = prefixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] not in ("POST", "PUT", "PATCH")
            or not scope["path"].startswith(self.prefixes)
        ):
            return await self.app(scope, receive, send)
        for name, value in scope["headers"]:
            if name == b"content-length":
                if value.isdigit() and int(value) > self.limit:
                    return await _too_large(send)
                break
        received = 0
        exceeded = False

        async def limited_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    exceeded = True
                    return {"type": "http.disconnect"}  # makes Django stop reading
            return message

        await self.app(scope, limited_receive, send)
        if exceeded:
            await _too_large(send)


async def _too_large(send: Send) -> None:
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(_TOO_LARGE)).encode()),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": _TOO_LARGE})
