"""ASGI plumbing: route ``/media/`` to the media app, the rest to Django.

Also owns the lifespan (one service per event loop, closed on shutdown), and
:func:`with_media`, which wraps a host project's Django application.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from typing import TYPE_CHECKING, cast

from mediacache.core.asgi_types import ASGIApp, Receive, Scope, Send
from mediacache.engine import Engine
from mediacache.observability import health, scrape
from mediacache.observability.flusher import flush_forever
from mediacache.serving.app import MediaApp
from mediacache.serving.bodylimit import BodySizeLimit

if TYPE_CHECKING:
    from django.core.handlers.asgi import ASGIHandler

logger = logging.getLogger("mediacache.asgi")


class MediaRouter:
    def __init__(self, django_app: ASGIApp, engine: Engine, *, prefix: str = "/media/") -> None:
        self.django_app = django_app
        self.engine = engine
        self.prefix = prefix
        self.media_app: MediaApp | None = None
        self._flusher: asyncio.Task[None] | None = None

    def _media(self) -> MediaApp:
        if self.media_app is None:
            settings = self.engine.settings
            self.media_app = MediaApp(
                self.engine.build_service(),
                max_age=settings.CACHE_TTL,
                retry_after=settings.STORE_RETRY_AFTER,
            )
        return self.media_app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            if self._flusher is None:
                self._start()  # servers run without lifespan events too
            path = scope["path"]
            if path.startswith(self.prefix):
                # Not None: _start() made it, at the lifespan's start-up or just above;
                # a check here would cost every request.
                return await self.media_app(scope, receive, send)  # type: ignore[misc, return-value]
            if path == "/healthz":
                return await health.healthz(scope, receive, send)
            if path == "/readyz":
                return await health.readyz(self.engine, send)
            if path == "/metrics":
                return await scrape.metrics_endpoint(
                    scope, send, self.engine.settings.METRICS_TOKEN
                )
        elif scope["type"] == "lifespan":
            return await self._lifespan(receive, send)
        return await self.django_app(scope, receive, send)

    def _start(self) -> None:
        """Background work of this process: the invalidation listener, the stats flusher.

        Then ``gc.freeze()`` (``MEDIA_GC_FREEZE``): the ~100,000 objects Django and
        the app made at start-up live as long as the worker, yet every full
        collection walked them (18-25 ms measured, 85-180 ms on a loaded machine),
        a pause that lands on requests in flight and on Redis calls timed at 100 ms.
        """
        self._media().service.start()
        self._flusher = asyncio.ensure_future(
            flush_forever(self.engine, self.engine.settings.STATS_INTERVAL)
        )
        if self.engine.settings.GC_FREEZE:
            gc.collect()
            gc.freeze()

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self._start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self._flusher is not None:
                    self._flusher.cancel()  # flushes once more on the way out
                    await asyncio.gather(self._flusher, return_exceptions=True)
                if self.media_app is not None:
                    await self.media_app.service.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return


def with_media(django_app: ASGIHandler | ASGIApp, engine: Engine | None = None) -> MediaRouter:
    """Wrap a Django ASGI application: ``/media/``, ``/healthz``, ``/readyz`` and
    ``/metrics`` are answered before Django, request bodies are size-limited, and
    start-up refuses a configuration the ``mediacache`` system checks reject.

    In a host project's asgi.py::

        application = with_media(get_asgi_application())
    """
    from django.conf import settings
    from django.core import checks
    from django.core.exceptions import ImproperlyConfigured

    errors = [m for m in checks.run_checks(tags=["mediacache"]) if m.is_serious()]
    if errors:
        raise ImproperlyConfigured("; ".join(f"{e.msg} {e.hint or ''}".strip() for e in errors))
    # django-stubs type the scope of Django's handlers as a dict, core.asgi_types as a
    # MutableMapping: to a server, which passes a dict, both are ASGI apps.
    app = cast(ASGIApp, django_app)
    if getattr(settings, "SERVE_STATIC", False):
        from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

        # Its stubs ask for Django's own handler; it wraps any ASGI app.
        app = cast(ASGIApp, ASGIStaticFilesHandler(cast("ASGIHandler", django_app)))
    if engine is None:
        from mediacache.engine import get_engine

        engine = get_engine()
    # Multipart framing adds a little to the file itself.
    limit = engine.settings.MAX_UPLOAD_BYTES + 64 * 1024
    return MediaRouter(BodySizeLimit(app, limit), engine)
