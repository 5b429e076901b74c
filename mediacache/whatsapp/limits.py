"""What WhatsApp accepts, checked before a send: media types, sizes, codecs, file names.

Pure functions of a :class:`~mediacache.core.objects.MediaObject` and the settings:
the limits are WhatsApp's (5 MB images, 16 MB H.264/AAC MP4 video, 100 MB documents),
overridable in ``settings.MEDIACACHE``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mediacache.core.filetypes import extension_for
from mediacache.core.headers import safe_filename
from mediacache.core.objects import MediaObject
from mediacache.core.settings import media_settings
from mediacache.media.transcode import VOICE_CONTENT_TYPE


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


# What Evolution turns a mediatype into before the upload to WhatsApp: every image goes
# through sharp's .jpeg(), whatever it was (EVOLUTION.md, trap 7).
REENCODED_AS = {"image": "image/jpeg"}


def delivered_type(obj: MediaObject, mediatype: str) -> str:
    """The type WhatsApp receives for ``obj`` sent as ``mediatype``: JPEG for any image.

    Evolution labels what it uploads by ``fileName``'s extension, not by the bytes, so
    the name and mimetype sent must be this type, or a PNG arrives as JPEG bytes
    labelled ``image/png``.
    """
    return REENCODED_AS.get(mediatype, obj.content_type)


def file_name_for(obj: MediaObject, mediatype: str | None = None) -> str:
    """The original name with the extension of the type WhatsApp gets (``report`` ->
    ``report.pdf``; ``photo.png`` sent as an image -> ``photo.jpg``)."""
    content_type = delivered_type(obj, mediatype) if mediatype else obj.content_type
    extension = extension_for(content_type)
    name = safe_filename(obj.filename, obj.media_hash or "file")
    stem, dot, current = name.rpartition(".")
    if dot and f".{current.lower()}" == extension:
        return name
    if dot and extension == ".jpg" and current.lower() in ("jpeg", "jpe"):
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
    obj: MediaObject, *, media_info: Mapping[str, Any] | None = None, as_document: bool = False
) -> str:
    """The ``mediatype`` to send ``obj`` as, or NotSendable with the reason.

    ``media_info``: what a probe saw (``format``, ``video``, ``audio`` codecs); without
    it a video is only checked for size (Evolution and WhatsApp decide the rest).
    """
    mediatype = "document" if as_document else mediatype_for(obj.content_type)
    size = obj.size
    if mediatype == "document":
        limit = media_settings().DOCUMENT_MAX_BYTES
        if size > limit:
            raise NotSendable(
                f"the file is {_mb(size)}; WhatsApp takes documents up to {_mb(limit)}"
            )
    elif mediatype == "image":
        limit = media_settings().IMAGE_MAX_BYTES
        if size > limit:
            raise NotSendable(
                f"the image is {_mb(size)}, over WhatsApp's {_mb(limit)} for images; "
                "send it with as_document: true"
            )
    elif mediatype == "video":
        limit = media_settings().VIDEO_MAX_BYTES
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
    limit = media_settings().VOICE_PLAY_BUTTON_BYTES
    if mediatype == "audio" and obj.size > limit:
        warnings.append(
            f"the voice note is {obj.size} bytes, over {limit}: WhatsApp shows no play "
            "button until the recipient downloads it"
        )
    return warnings
