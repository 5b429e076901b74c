"""Sending an attachment through Evolution API by its short link, for any host app.

One call turns a row of the registered model into the right request: voice notes
(any audio) as PTT through ``sendWhatsAppAudio``, the rest through ``sendMedia``
with a ``fileName`` whose extension matches the real type. The object is put in
the caches first, so Evolution's download is a hit.
"""

from __future__ import annotations

import logging

from django.db import models

from evolution import EvolutionClient, EvolutionError, SendResult

from .engine import get_engine
from .filetypes import extension_for
from .headers import safe_filename
from .objects import MediaObject
from .registry import media_model
from .stats import STATS

logger = logging.getLogger("mediacache.whatsapp")


def mediatype_for(content_type: str) -> str:
    """Evolution's ``mediatype``: image, video, audio or document."""
    base = content_type.split(";", 1)[0].lower()
    if base.startswith("image/") and base != "image/svg+xml":
        return "image"
    if base.startswith("video/"):
        return "video"
    if base.startswith("audio/"):
        return "audio"
    return "document"


def file_name_for(obj: MediaObject) -> str:
    """The original name with the extension of the real type (``report`` -> ``report.pdf``)."""
    extension = extension_for(obj.content_type)
    name = safe_filename(obj.filename, obj.media_hash or "file")
    stem, dot, current = name.rpartition(".")
    if dot and f".{current.lower()}" == extension:
        return name
    return f"{stem if dot else name}{extension}"


def warm(obj: MediaObject) -> None:
    """Load the object into the caches (Redis for every process, this process's L1)."""
    engine = get_engine()
    if obj.size <= engine.settings.CACHE_MAX_OBJECT_BYTES:
        engine.warm(obj, engine.store.read(obj.key))


def send_via_evolution(
    client: EvolutionClient, number: str, instance: models.Model, *, caption: str | None = None
) -> SendResult:
    """Send a row of the registered model; raises the client's typed EvolutionError."""
    obj = media_model().media_object(instance)
    url = instance.short_url  # type: ignore[attr-defined]
    if not url:
        raise ValueError("this attachment has no short link yet (run generate_media_hashes)")
    logger.info("[CHAT] Using short URL: %s", url)
    try:
        warm(obj)
    except Exception as exc:  # a cold cache only costs Evolution's download a miss
        logger.warning("[CHAT] could not warm the cache for %s: %r", obj.media_hash, exc)
    mediatype = mediatype_for(obj.content_type)
    try:
        if mediatype == "audio":
            logger.info("[CHAT] Sending PTT via sendWhatsAppAudio")
            result = client.send_audio(number, url)
        else:
            logger.info("[CHAT] Sending %s via sendMedia", mediatype)
            result = client.send_media(
                number,
                url,
                mediatype=mediatype,
                mimetype=obj.content_type,
                file_name=file_name_for(obj),
                caption=caption,
            )
    except EvolutionError as exc:
        STATS.evolution_send("failed")
        logger.error(
            "[CHAT] Evolution API response: status %s, send failed: %s",
            exc.status_code or "-",
            exc,
        )
        raise
    STATS.evolution_send("sent")
    logger.info("[CHAT] Evolution API response: status 201")
    return result
