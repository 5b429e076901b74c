"""``with_media()`` around a host's app: it takes only the paths it is told to.

The host app here is a plain ASGI callable standing in for Django (what reaches it,
and how much of the body it read, is what these tests look at); the router and the
body limit are the real ones.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from django.core.exceptions import ImproperlyConfigured

from mediacache.core.settings import MediaSettings
from mediacache.engine import Engine
from mediacache.serving.bodylimit import BodySizeLimit
from mediacache.serving.router import MediaRouter


class Host:
    """The host's app: answers 200 with the path and the body bytes it read; stops
    without an answer when the body is cut off, as Django does."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    async def __call__(self, scope, receive, send) -> None:
        self.seen.append(scope["path"])
        read = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            read += len(message.get("body", b""))
            if not message.get("more_body"):
                break
        body = json.dumps({"host": scope["path"], "read": read}).encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})


async def request(app, path: str, method: str = "GET", chunks: tuple[bytes, ...] = (b"",)):
    """One request through ``app``: (status, body)."""
    sent: list[dict] = []
    pending = [
        {"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1}
        for i, chunk in enumerate(chunks)
    ]

    async def receive() -> dict:
        return pending.pop(0) if pending else {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "headers": [],
        "query_string": b"",
        "client": ("127.0.0.1", 5000),
    }
    await app(scope, receive, send)
    statuses = [m["status"] for m in sent if m["type"] == "http.response.start"]
    return statuses[-1], b"".join(m.get("body", b"") for m in sent if "body" in m)


def call(app, path: str, method: str = "GET", chunks: tuple[bytes, ...] = (b"",)):
    return asyncio.run(request(app, path, method, chunks))


def serve(router: MediaRouter, *paths: str) -> list[tuple[int, bytes]]:
    """GET each path through ``router`` in one event loop (the router starts its
    background work at the first request), then stop that work."""

    async def run() -> list[tuple[int, bytes]]:
        try:
            return [await request(router, path) for path in paths]
        finally:
            if router._flusher is not None:
                router._flusher.cancel()
                await asyncio.gather(router._flusher, return_exceptions=True)
            if router.media_app is not None:
                await router.media_app.service.aclose()

    return asyncio.run(run())


def router_over(host: Host, **settings) -> MediaRouter:
    """A MediaRouter with a host project's settings: the engine's defaults, no Redis."""
    return MediaRouter(host, Engine(MediaSettings(**settings)))


def test_a_host_gets_no_health_or_metrics_path_by_default():
    host = Host()
    router = router_over(host)
    assert router.endpoints == {}
    answers = serve(router, "/healthz", "/readyz", "/metrics")
    assert [(status, json.loads(body)["host"]) for status, body in answers] == [
        (200, "/healthz"),
        (200, "/readyz"),
        (200, "/metrics"),
    ]


def test_renamed_paths_are_answered_and_the_old_ones_left_to_the_host():
    host = Host()
    router = router_over(host, HEALTH_PATH="/mediacache/healthz", METRICS_PATH="/mediacache/m")
    health, metrics, old_health, old_metrics = serve(
        router, "/mediacache/healthz", "/mediacache/m", "/healthz", "/metrics"
    )
    assert health == (200, b'{"status": "ok"}')
    assert metrics[0] == 200  # a loopback client
    assert b"mediacache_" in metrics[1]
    assert old_health[0] == old_metrics[0] == 200
    assert host.seen == ["/healthz", "/metrics"]


@pytest.mark.parametrize(
    ("key", "path"),
    [
        ("HEALTH_PATH", "healthz"),  # no leading slash: never matched
        ("METRICS_PATH", "/media/metrics"),  # under the media prefix: never reached
    ],
)
def test_a_path_that_could_never_be_answered_is_refused(key, path):
    with pytest.raises(ImproperlyConfigured, match=key):
        router_over(Host(), **{key: path})


def test_two_endpoints_on_one_path_are_refused():
    with pytest.raises(ImproperlyConfigured, match="READY_PATH"):
        router_over(Host(), HEALTH_PATH="/h", READY_PATH="/h")


def test_a_bare_with_media_limits_no_host_body():
    from mediacache.serving.router import with_media

    engine = Engine(MediaSettings(MAX_UPLOAD_BYTES=1000))
    router = with_media(Host(), engine)
    assert isinstance(router.django_app, Host)  # no limiter in between
    limited = with_media(Host(), engine, limit_paths="/api/")  # one prefix, as a string
    assert isinstance(limited.django_app, BodySizeLimit)
    assert limited.django_app.prefixes == ("/api/",)
    assert limited.django_app.limit == 1000 + 64 * 1024


def test_bodies_outside_the_limited_prefixes_reach_the_host_whole():
    host = Host()
    app = BodySizeLimit(host, 1000, prefixes=("/api/", "/ops/upload"))
    big = (b"x" * 800, b"y" * 800, b"z" * 800)
    status, body = call(app, "/inbox/upload", "POST", big)
    assert (status, json.loads(body)) == (200, {"host": "/inbox/upload", "read": 2400})
    status, body = call(app, "/api/attachments/", "POST", big)
    assert (status, json.loads(body)) == (413, {"error": "upload too large"})
    assert call(app, "/ops/upload/", "PUT", big)[0] == 413
    assert call(app, "/api/attachments/", "POST", (b"x" * 900,))[0] == 200  # under it


def test_by_default_the_limit_covers_every_path():
    status, _ = call(BodySizeLimit(Host(), 10), "/anything", "PATCH", (b"x" * 11,))
    assert status == 413
