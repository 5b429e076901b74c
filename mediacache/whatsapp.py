"""Sending an attachment through Evolution API by its short link, for any host app.

One call turns a row of the registered model into the right request: voice notes
(any audio) as PTT through ``sendWhatsAppAudio``, the rest through ``sendMedia``
with a ``fileName`` whose extension matches the real type. The object is put in
the caches first, so Evolution's download is a hit.

What goes is what the short link serves: the WhatsApp-ready variant when the row
has one (a voice note as Ogg Opus mono -> ``encoding: false``, so Evolution
neither re-encodes it nor appends ``?timestamp=``; an image as JPEG). WhatsApp's
limits are checked first (:func:`check_sendable`): an image over 5 MB, a video
over 16 MB or not H.264/AAC in MP4, a document over 100 MB cannot go as such; a
video can go ``as_document`` instead.
"""

from __future__ import annotations

import logging

from django.db import models

from evolution import EvolutionClient, EvolutionError, SendResult

from .engine import get_engine
from .filetypes import extension_for
from .hashes import ORIGINAL_SUFFIX
from .headers import safe_filename
from .objects import MediaObject
from .registry import media_model
from .stats import STATS
from .transcode import VOICE_CONTENT_TYPE, media_setting

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


class NotSendable(ValueError):
    """WhatsApp would refuse this object as its media type; ``reason`` says why and what to do."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _mb(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MB"


def is_voice_variant(obj: MediaObject) -> bool:
    return obj.content_type == VOICE_CONTENT_TYPE


def check_sendable(
    obj: MediaObject, *, media_info: dict | None = None, as_document: bool = False
) -> str:
    """The ``mediatype`` to send ``obj`` as, or NotSendable with the reason.

    ``media_info``: what a probe saw (``format``, ``video``, ``audio`` codecs); without
    it a video is only checked for size (Evolution and WhatsApp decide the rest).
    """
    mediatype = "document" if as_document else mediatype_for(obj.content_type)
    size = obj.size
    if mediatype == "document":
        limit = int(media_setting("DOCUMENT_MAX_BYTES"))
        if size > limit:
            raise NotSendable(
                f"the file is {_mb(size)}; WhatsApp takes documents up to {_mb(limit)}"
            )
    elif mediatype == "image":
        limit = int(media_setting("IMAGE_MAX_BYTES"))
        if size > limit:
            raise NotSendable(
                f"the image is {_mb(size)}, over WhatsApp's {_mb(limit)} for images; "
                "send it with as_document: true"
            )
    elif mediatype == "video":
        limit = int(media_setting("VIDEO_MAX_BYTES"))
        problems = []
        if size > limit:
            problems.append(f"it is {_mb(size)}, over WhatsApp's {_mb(limit)} for video")
        info = media_info or {}
        base = obj.content_type.split(";", 1)[0].lower()
        if info.get("video") or info.get("audio"):
            if base not in ("video/mp4", "video/3gpp"):
                problems.append(f"the container is {base}, not MP4")
            if info.get("video") != "h264":
                problems.append(f"the video codec is {info.get('video') or 'missing'}, not H.264")
            if info.get("audio") not in (None, "aac"):
                problems.append(f"the audio codec is {info.get('audio')}, not AAC")
        if problems:
            raise NotSendable(
                "cannot be sent as video: "
                + "; ".join(problems)
                + ". Send it with as_document: true"
            )
    return mediatype


def send_warnings(obj: MediaObject, mediatype: str) -> list[str]:
    """What the recipient may notice, though the send goes ahead."""
    warnings = []
    limit = int(media_setting("VOICE_PLAY_BUTTON_BYTES"))
    if mediatype == "audio" and obj.size > limit:
        warnings.append(
            f"the voice note is {obj.size} bytes, over {limit}: WhatsApp shows no play "
            "button until the recipient downloads it"
        )
    return warnings


def warm(obj: MediaObject) -> None:
    """Load the object into the caches (Redis for every process, this process's L1)."""
    engine = get_engine()
    if obj.size <= engine.settings.CACHE_MAX_OBJECT_BYTES:
        engine.warm(obj, engine.store.read(obj.key))


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
    url = instance.short_url  # type: ignore[attr-defined]
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
