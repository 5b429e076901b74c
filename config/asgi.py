"""ASGI entry point: ``/media/`` goes to Mediacache's own app, the rest to Django."""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

# Every route of the service takes bodies only for Mediacache (uploads through the API,
# /ops/ and the admin, the webhook's base64 media): all of them get the upload limit,
# refused while streaming instead of spooled first. A host project lists its own.
LIMITED_PATHS = ("/",)


def build_application(engine=None):
    """The whole service; tests build one per server with their own engine.

    ``/media/`` and the health paths first; then the body limit; then the API's uploads,
    taken in while they arrive (``chat.streaming``, ``STREAMING_UPLOADS``); then Django."""
    from django.core.asgi import get_asgi_application

    from chat.streaming import StreamingUploads
    from mediacache.serving.router import with_media

    uploads = StreamingUploads(get_asgi_application())
    return with_media(uploads, engine, limit_paths=LIMITED_PATHS)


application = build_application()
