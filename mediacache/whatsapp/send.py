"""Sending an attachment through Evolution API by its short link, for any host app.

One call turns a row of the registered model into the right request: voice notes
(any audio) as PTT through ``sendWhatsAppAudio``, the rest through ``sendMedia``
with a ``fileName`` whose extension matches the real type. The object is put in
the caches first, so Evolution's download is a hit.

What goes is what the short link serves: the WhatsApp-ready variant when the row
has one (a voice note as Ogg Opus mono -> ``encoding: false``, so Evolution
neither re-encodes it nor appends ``?timestamp=``; an image as JPEG). An image without
a variant (a small PNG) still goes as ``.jpg``/``image/jpeg``: Evolution re-encodes
every image to JPEG and labels it by ``fileName``'s extension. WhatsApp's
limits are checked first (:func:`check_sendable`): an image over 5 MB, a video
over 16 MB or not H.264/AAC in MP4, a document over 100 MB cannot go as such; a
video can go ``as_document`` instead.
"""

from __future__ import annotations

import logging

from django.db import models

from evolution import EvolutionClient, EvolutionError, EvolutionInstanceNotConnected, SendResult
from mediacache.core.hashes import ORIGINAL_SUFFIX
from mediacache.core.objects import MediaObject
from mediacache.engine import get_engine
from mediacache.registry import media_model
from mediacache.whatsapp.counters import count_send
from mediacache.whatsapp.limits import (
    check_sendable,
    delivered_type,
    file_name_for,
    is_voice_variant,
    send_warnings,
)
from mediacache.whatsapp.state import CACHE as GATEWAY_STATES

logger = logging.getLogger("mediacache.whatsapp")


def warm(obj: MediaObject) -> bool:
    """Load the object into the caches (Redis for every process, this process's L1):
    :meth:`Engine.warm <mediacache.engine.Engine.warm>`, which skips what is too large to
    cache or expired and reads the rest from the store that holds it."""
    return get_engine().warm(obj)


def send_via_evolution(
    client: EvolutionClient,
    number: str,
    instance: models.Model,
    *,
    caption: str | None = None,
    as_document: bool = False,
    audio_encoding: bool | None = None,
    warnings: list[str] | None = None,
) -> SendResult:
    """Send a row of the registered model; raises the client's typed EvolutionError,
    or :class:`NotSendable` before any request when WhatsApp would refuse it.

    ``audio_encoding``: the ``encoding`` of a voice note whose Ogg Opus variant is
    ready (None: false, Evolution sends it as it is). Warnings (a voice note over
    the play-button size) are logged and appended to ``warnings``.
    """
    registered = media_model()
    url = registered.short_url(instance)
    if not url:
        raise ValueError("this attachment has no short link yet (run generate_media_hashes)")
    obj = registered.media_object(instance)
    media_info = getattr(instance, "media_info", None)
    if as_document and registered.variant_key(instance):
        # A document goes as it came, not as its WhatsApp-ready variant.
        obj = registered.media_object(instance, original=True)
        url += ORIGINAL_SUFFIX
    mediatype = check_sendable(obj, media_info=media_info, as_document=as_document)
    for warning in send_warnings(obj, mediatype):
        logger.warning("[CHAT] %s: %s", obj.media_hash, warning)
        if warnings is not None:
            warnings.append(warning)
    logger.info("[CHAT] Using short URL: %s", url)
    try:
        warm(obj)
    except Exception as exc:  # a cold cache only costs Evolution's download a miss
        logger.warning("[CHAT] could not warm the cache for %s: %r", obj.media_hash, exc)
    try:
        if mediatype == "audio":
            encoding = None
            if is_voice_variant(obj):
                encoding = bool(audio_encoding) if audio_encoding is not None else False
            logger.info("[CHAT] Sending PTT via sendWhatsAppAudio (encoding=%s)", encoding)
            result = client.send_audio(number, url, encoding=encoding)
        else:
            logger.info("[CHAT] Sending %s via sendMedia", mediatype)
            result = client.send_media(
                number,
                url,
                mediatype=mediatype,
                # Evolution re-encodes images to JPEG and labels them by fileName.
                mimetype=delivered_type(obj, mediatype),
                file_name=file_name_for(obj, mediatype),
                caption=caption,
            )
    except EvolutionError as exc:
        count_send("failed")
        if isinstance(exc, EvolutionInstanceNotConnected):
            # What /ops/ and /readyz show is read again, not taken from before the send.
            GATEWAY_STATES.forget(client.base_url, client.instance)
        logger.error(
            "[CHAT] Evolution API response: status %s, send failed: %s",
            exc.status_code or "-",
            exc,
        )
        raise
    count_send("sent")
    logger.info("[CHAT] Evolution API response: status 201")
    return result
