"""Media types and what conversion makes of them (pure data, no decoder needed)."""

from __future__ import annotations

from dataclasses import dataclass

VOICE_CONTENT_TYPE = "audio/ogg; codecs=opus"

# Image types WhatsApp does not show inline: they always get a JPEG variant.
IMAGE_TYPES_NEEDING_JPEG = frozenset(
    {"image/heic", "image/heif", "image/webp", "image/tiff", "image/bmp", "image/x-ms-bmp"}
)
# Containers that may hold only audio (browser recordings, Safari's audio/mp4), and
# what such a file is once decoding showed it has no video: a browser's WebM
# recording is sniffed as video/webm, but it is audio/webm.
AUDIO_TYPE_OF_CONTAINER = {
    "application/ogg": "audio/ogg",
    "video/webm": "audio/webm",
    "video/mp4": "audio/mp4",
    "video/quicktime": "audio/mp4",
    "video/3gpp": "audio/3gpp",
    "video/x-matroska": "audio/x-matroska",
    "audio/x-matroska": "audio/x-matroska",
}
MAYBE_AUDIO_CONTAINERS = frozenset(AUDIO_TYPE_OF_CONTAINER)


@dataclass(frozen=True, slots=True)
class SniffedType:
    """An upload's type as read from its bytes, never the client's claim: its MIME type
    (what decides the variant) and the extension its object key gets."""

    mime_type: str
    extension: str
