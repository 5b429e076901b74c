"""JSON bodies for Evolution API v1 and v2.

Kept apart from the HTTP code so the exact wire shapes are easy to read and unit-test.
"""

from __future__ import annotations

from typing import Any

MEDIA_TYPES = frozenset({"image", "video", "document", "audio"})


def has_extension(file_name: str) -> bool:
    """True for ``name.ext``: Evolution derives the mimetype from the extension and fails
    (HTTP 500) on documents whose name it cannot split."""
    stem, dot, ext = file_name.rpartition(".")
    return bool(dot and stem.strip() and ext.isalnum() and "/" not in file_name)


def validate_media_args(number: str, url: str, mediatype: str, file_name: str) -> None:
    """Reject locally what Evolution would reject late (or with a 500)."""
    _validate_common(number, url)
    if mediatype not in MEDIA_TYPES:
        allowed = ", ".join(sorted(MEDIA_TYPES))
        raise ValueError(f"mediatype must be one of {allowed}, got {mediatype!r}")
    if not has_extension(file_name):
        raise ValueError(f"file_name must have an extension such as .pdf, got {file_name!r}")


def _validate_common(number: str, url: str) -> None:
    if not number or not number.strip():
        raise ValueError("number must not be empty")
    if not url or not url.strip():
        raise ValueError("url must not be empty")


def audio_payload(
    number: str,
    url: str,
    *,
    api_version: int,
    delay: int | None = None,
    quoted: dict[str, Any] | None = None,
    encoding: bool | None = None,
) -> dict[str, Any]:
    """Body for ``/message/sendWhatsAppAudio``: a voice note.

    ``encoding`` None leaves Evolution's default (true: it downloads the URL with
    ``?timestamp=`` appended and transcodes it to Opus with ffmpeg); ``False`` for
    audio that already is Ogg Opus mono: Evolution hands the URL on as it is.
    v2 takes it at the top level, v1 in ``options``.
    """
    _validate_common(number, url)
    if api_version == 1:
        options: dict[str, Any] = {"encoding": True if encoding is None else encoding}
        if delay is not None:
            options["delay"] = delay
        if quoted is not None:
            options["quoted"] = quoted
        return {"number": number, "options": options, "audioMessage": {"audio": url}}
    body: dict[str, Any] = {"number": number, "audio": url}
    if encoding is not None:
        body["encoding"] = encoding
    if delay is not None:
        body["delay"] = delay
    if quoted is not None:
        body["quoted"] = quoted
    return body


def media_payload(
    number: str,
    url: str,
    *,
    api_version: int,
    mediatype: str,
    mimetype: str,
    file_name: str,
    caption: str | None = None,
    delay: int | None = None,
    quoted: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Body for ``/message/sendMedia``: image, video, document or plain audio file."""
    validate_media_args(number, url, mediatype, file_name)
    if api_version == 1:
        options: dict[str, Any] = {}
        if delay is not None:
            options["delay"] = delay
        if quoted is not None:
            options["quoted"] = quoted
        media: dict[str, Any] = {"mediatype": mediatype, "media": url, "fileName": file_name}
        if caption is not None:
            media["caption"] = caption
        return {"number": number, "options": options, "mediaMessage": media}
    body: dict[str, Any] = {
        "number": number,
        "mediatype": mediatype,
        "media": url,
        "fileName": file_name,
    }
    if mimetype:
        body["mimetype"] = mimetype
    if caption is not None:
        body["caption"] = caption
    if delay is not None:
        body["delay"] = delay
    if quoted is not None:
        body["quoted"] = quoted
    return body


def base64_payload(message_id: str, *, convert_to_mp4: bool = False) -> dict[str, Any]:
    """Body for ``/chat/getBase64FromMediaMessage``: fetch a received media by message id."""
    if not message_id:
        raise ValueError("message_id must not be empty")
    return {"message": {"key": {"id": message_id}}, "convertToMp4": convert_to_mp4}
