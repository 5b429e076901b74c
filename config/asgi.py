"""ASGI entry point: ``/media/`` goes to Mediacache's own app, the rest to Django."""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")


def build_application(engine=None):
    """The whole service; tests build one per server with their own engine."""
    from django.conf import settings
    from django.core.asgi import get_asgi_application

    django_app = get_asgi_application()
    if settings.DEBUG:
        from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

        django_app = ASGIStaticFilesHandler(django_app)

    from mediacache.asgi import BodySizeLimit, MediaRouter
    from mediacache.engine import get_engine

    engine = engine or get_engine()
    # Multipart framing adds a little to the file itself.
    limit = engine.settings.MAX_UPLOAD_BYTES + 64 * 1024
    return MediaRouter(BodySizeLimit(django_app, limit), engine)


application = build_application()
