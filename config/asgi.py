"""ASGI entry point: ``/media/`` goes to Mediacache's own app, the rest to Django."""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")


def build_application(engine=None):
    """The whole service; tests build one per server with their own engine."""
    from django.core.asgi import get_asgi_application

    from mediacache.serving.router import with_media

    return with_media(get_asgi_application(), engine)


application = build_application()
