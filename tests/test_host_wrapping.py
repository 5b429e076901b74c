"""``with_media()`` as a host project uses it, over real HTTP: the health and metrics
paths are the settings' (renamed, or left to Django), and the fast path's shortcut
answers L1 hits past ASGI middleware the host wraps around the router unless
``FAST_PATH`` is off."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import upload
from tests.servers import serve_asgi


def wrapped_service(**overrides):
    """The service's Django app under ``with_media``, its engine built from overrides."""
    from django.core.asgi import get_asgi_application

    from mediacache.asgi import with_media
    from mediacache.engine import Engine

    return with_media(get_asgi_application(), Engine.from_django(**overrides))


class SeenByMiddleware:
    """ASGI middleware as Sentry's and OpenTelemetry's are built: the inner app as
    ``.app``; records every HTTP path it is called for."""

    def __init__(self, app) -> None:
        self.app = app
        self.paths: list[str] = []

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            self.paths.append(scope["path"])
        await self.app(scope, receive, send)


def test_health_and_metrics_paths_renamed_or_left_to_django(live):
    app = wrapped_service(HEALTH_PATH="", READY_PATH="/mediacache/readyz", METRICS_PATH="")
    with serve_asgi(app) as server:
        ready = httpx.get(f"{server.url}/mediacache/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["status"] == "ok"
        for path in ("/healthz", "/readyz", "/metrics"):
            answer = httpx.get(f"{server.url}{path}")
            assert answer.status_code == 404  # Django's: no such URL in its urls.py
            assert "mediacache_" not in answer.text


@pytest.mark.parametrize("fast_path", [True, False])
def test_middleware_around_the_router_misses_l1_hits_unless_fast_path_is_off(
    api, voice_note, fast_path
):
    created = upload(api, voice_note, "v.ogg")
    middleware = SeenByMiddleware(wrapped_service(FAST_PATH=fast_path))
    with serve_asgi(middleware) as server, httpx.Client(base_url=server.url) as client:
        path = f"/media/{created['media_hash']}"
        first, second = client.get(path), client.get(path)
    assert (first.headers["x-cache"], second.headers["x-cache"]) == ("MISS", "HIT")
    assert first.content == second.content == voice_note
    # The shortcut finds the router through .app and answers the hit from the protocol.
    assert middleware.paths == ([path] if fast_path else [path, path])
