"""Attachment lifecycle: store the bytes, then record the row; delete both together."""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.files.base import File
from django.core.files.storage import default_storage
from django.db import DatabaseError

from mediacache.engine import get_engine

from .models import MessageAttachment
from .uploads import SNIFF_BYTES, new_object_key, sniff

logger = logging.getLogger("chat")


class StoreWriteFailed(Exception):
    """The bytes could not be made durable: nothing was recorded."""


def create_attachment(
    upload: File, *, original_filename: str, sha256: str, message=None
) -> MessageAttachment:
    """Store ``upload`` under a fresh key, then save its row. Returns the saved row.

    The row is written only after the store has the bytes; if the row cannot be
    written the object is deleted again, so neither side is left orphaned.
    """
    upload.seek(0)
    kind = sniff(upload.read(SNIFF_BYTES))
    upload.seek(0)
    key = new_object_key(kind.extension)
    try:
        stored_key = default_storage.save(key, upload)
    except Exception as exc:
        logger.error("[CHAT] store write failed for %s: %r", key, exc)
        raise StoreWriteFailed(str(exc)) from exc
    attachment = MessageAttachment(
        message=message,
        original_filename=original_filename[:255],
        mime_type=kind.mime_type,
        size=upload.size,
        sha256=sha256,
    )
    attachment.file.name = stored_key
    try:
        attachment.save()
    except DatabaseError:
        logger.error("[CHAT] database write failed, removing stored object %s", stored_key)
        _delete_quietly(stored_key)
        raise
    logger.info(
        "[CHAT] stored %s as %s (%s, %d B) -> %s",
        stored_key,
        attachment.media_hash,
        attachment.mime_type,
        attachment.size,
        attachment.short_url,
    )
    if settings.MEDIACACHE["WARM_ON_UPLOAD"]:
        warm(attachment, upload)
    return attachment


def warm(attachment: MessageAttachment, upload: File) -> None:
    """Load the object into the caches from the upload at hand (no store read)."""
    engine = get_engine()
    if attachment.size <= engine.settings.CACHE_MAX_OBJECT_BYTES:
        upload.seek(0)
        engine.warm(attachment.media_object(), upload.read())


def delete_attachment(attachment: MessageAttachment) -> None:
    """Delete the object and the row, and forget the link in every cache tier."""
    media_hash, key = attachment.media_hash, attachment.file.name
    attachment.delete()
    if media_hash:
        get_engine().purge(media_hash)
    _delete_quietly(key)


def _delete_quietly(key: str) -> None:
    try:
        default_storage.delete(key)
    except Exception as exc:
        logger.error("[CHAT] could not delete stored object %s: %r", key, exc)
