"""ASGI entry point: ``/media/`` goes to Mediacache's own app, the rest to Django."""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")


def build_application(engine=None):
    """The whole service; tests build one per server with their own engine."""
    from django.conf import settings
    from django.core.asgi import get_asgi_application

    django_app = get_asgi_application()
    _refuse_bad_configuration()
    if settings.SERVE_STATIC:
        # The admin's and /ops/ assets (public, like any static file): a few small
        # files served from the apps' static dirs. Put a CDN or proxy in front for heavy use.
        from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

        django_app = ASGIStaticFilesHandler(django_app)

    from mediacache.asgi import BodySizeLimit, MediaRouter
    from mediacache.engine import get_engine

    engine = engine or get_engine()
    # Multipart framing adds a little to the file itself.
    limit = engine.settings.MAX_UPLOAD_BYTES + 64 * 1024
    return MediaRouter(BodySizeLimit(django_app, limit), engine)


def _refuse_bad_configuration() -> None:
    """Django runs system checks for manage.py commands only; a server must too."""
    from django.core import checks
    from django.core.exceptions import ImproperlyConfigured

    errors = [m for m in checks.run_checks(tags=["mediacache"]) if m.is_serious()]
    if errors:
        raise ImproperlyConfigured("; ".join(f"{e.msg} {e.hint or ''}".strip() for e in errors))


application = build_application()
