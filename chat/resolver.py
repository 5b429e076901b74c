"""The engine's view of an attachment: how ``/media/{hash}`` finds its object."""

from __future__ import annotations

from django.db import close_old_connections

from mediacache.objects import MediaObject

from .models import MessageAttachment

_FIELDS = ("file", "mime_type", "size", "sha256", "expires_at", "original_filename", "media_hash")


def resolve_media(media_hash: str) -> MediaObject | None:
    """Called from the engine's thread pool, outside any Django request.

    ``close_old_connections`` around the query gives these long-lived threads the
    connection hygiene of a request: a broken or too-old connection is dropped
    before, and with ``CONN_MAX_AGE=0`` the connection is closed after.
    """
    close_old_connections()
    try:
        attachment = MessageAttachment.objects.only(*_FIELDS).filter(media_hash=media_hash).first()
    finally:
        close_old_connections()
    return attachment.media_object() if attachment else None
