"""ASGI plumbing: route ``/media/`` to the media app, the rest to Django.

Also owns the lifespan (one service per event loop, closed on shutdown), the
optional health and metrics paths (``HEALTH_PATH``, ``READY_PATH``,
``METRICS_PATH``), and :func:`with_media`, which wraps a host project's Django
application.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, cast

from mediacache.core.asgi_types import ASGIApp, Receive, Scope, Send
from mediacache.engine import Engine
from mediacache.media import transcode
from mediacache.observability import health, scrape
from mediacache.observability.flusher import flush_forever
from mediacache.serving.app import MediaApp
from mediacache.serving.bodylimit import BodySizeLimit

if TYPE_CHECKING:
    from django.core.handlers.asgi import ASGIHandler

logger = logging.getLogger("mediacache.asgi")

Endpoint = Callable[[Scope, Receive, Send], Awaitable[None]]


class MediaRouter:
    def __init__(self, django_app: ASGIApp, engine: Engine, *, prefix: str = "/media/") -> None:
        self.django_app = django_app
        self.engine = engine
        self.prefix = prefix
        self.media_app: MediaApp | None = None
        self._flusher: asyncio.Task[None] | None = None
        self.endpoints = self._endpoints()

    def _endpoints(self) -> dict[str, Endpoint]:
        """The health and metrics paths the settings turn on, by path (one dict
        lookup per request); a path that could never be reached is refused."""
        settings = self.engine.settings
        engine = self.engine

        async def ready(scope: Scope, receive: Receive, send: Send) -> None:
            await health.readyz(engine, send)

        async def metrics(scope: Scope, receive: Receive, send: Send) -> None:
            await scrape.metrics_endpoint(scope, send, settings.METRICS_TOKEN)

        wanted: list[tuple[str, str, Endpoint]] = [
            ("HEALTH_PATH", settings.HEALTH_PATH, health.healthz),
            ("READY_PATH", settings.READY_PATH, ready),
            ("METRICS_PATH", settings.METRICS_PATH, metrics),
        ]
        endpoints: dict[str, Endpoint] = {}
        for key, path, endpoint in wanted:
            if not path:
                continue
            if not path.startswith("/") or path.startswith(self.prefix) or path in endpoints:
                from django.core.exceptions import ImproperlyConfigured

                raise ImproperlyConfigured(
                    f"MEDIACACHE[{key!r}] = {path!r}: a path starting with '/', outside "
                    f"{self.prefix!r} and unlike the other health and metrics paths, "
                    "or '' to leave it to the host"
                )
            endpoints[path] = endpoint
        return endpoints

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
            endpoint = self.endpoints.get(path)
            if endpoint is not None:
                return await endpoint(scope, receive, send)
        elif scope["type"] == "lifespan":
            return await self._lifespan(receive, send)
        return await self.django_app(scope, receive, send)

    def _start(self) -> None:
        """Background work of this process: the invalidation listener, the stats flusher,
        ``TRANSCODE_PREWARM`` conversion workers.

        Then ``gc.freeze()`` (``GC_FREEZE``; off by default, on in the service through
        ``MEDIA_GC_FREEZE``): the ~100,000 objects Django and the app made at start-up
        live as long as the worker, yet every full collection walked them (18-25 ms
        measured, 85-180 ms on a loaded machine), a pause that lands on requests in
        flight and on Redis calls timed at 100 ms. A host project's process may hold
        objects it means to free, so there it is the host's choice.
        """
        self._media().service.start()
        self._make_store()
        transcode.prewarm(self.engine.settings)
        self._flusher = asyncio.ensure_future(
            flush_forever(self.engine, self.engine.settings.STATS_INTERVAL)
        )
        if self.engine.settings.GC_FREEZE:
            gc.collect()
            gc.freeze()

    def _make_store(self) -> None:
        """The default storage's adapter, made now: a local store makes its directory,
        so ``/readyz`` is ready before the first upload. A storage the engine cannot
        serve from is left to the fields' own storages (``/readyz`` names it)."""
        try:
            self.engine.store  # noqa: B018 - a cached property, made here
        except TypeError as exc:
            logger.info("[MEDIA] the default storage is not served from: %s", exc)

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


def with_media(
    django_app: ASGIHandler | ASGIApp,
    engine: Engine | None = None,
    *,
    limit_paths: str | Iterable[str] = (),
) -> MediaRouter:
    """Wrap a Django ASGI application: ``/media/`` (and the health and metrics paths
    the settings turn on) are answered before Django, and start-up refuses a
    configuration the ``mediacache`` system checks reject.

    ``limit_paths``: path prefixes whose POST/PUT/PATCH bodies get 413 past
    ``MAX_UPLOAD_BYTES`` while they stream in (:class:`BodySizeLimit`); every other
    path of the host is left alone. The engine's own ``/media/`` takes no bodies, so
    the default limits nothing; the service passes its upload routes.

    In a host project's asgi.py::

        application = with_media(get_asgi_application())
    """
    from django.core import checks
    from django.core.exceptions import ImproperlyConfigured

    errors = [m for m in checks.run_checks(tags=["mediacache"]) if m.is_serious()]
    if errors:
        raise ImproperlyConfigured("; ".join(f"{e.msg} {e.hint or ''}".strip() for e in errors))
    # Static files are the host's to serve (the service's: whitenoise, config/staticfiles.py).
    # django-stubs type the scope of Django's handlers as a dict, core.asgi_types as a
    # MutableMapping: to a server, which passes a dict, both are ASGI apps.
    app = cast(ASGIApp, django_app)
    if engine is None:
        from mediacache.engine import get_engine

        engine = get_engine()
    prefixes = (limit_paths,) if isinstance(limit_paths, str) else tuple(limit_paths)
    if prefixes:
        # Multipart framing adds a little to the file itself.
        limit = engine.settings.MAX_UPLOAD_BYTES + 64 * 1024
        app = BodySizeLimit(app, limit, prefixes=prefixes)
    return MediaRouter(app, engine)
