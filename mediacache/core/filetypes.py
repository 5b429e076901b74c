"""File extensions for MIME types: the names gateways and players expect."""

from __future__ import annotations

import mimetypes

# libmagic names some types differently from what players and gateways expect,
# and mimetypes' first guess is not always the common extension.
_EXTENSIONS = {
    "audio/ogg": ".ogg",
    "audio/opus": ".opus",
    "audio/mpeg": ".mp3",
    "audio/mp4": ".m4a",
    "audio/x-m4a": ".m4a",
    "audio/aac": ".aac",
    "audio/x-wav": ".wav",
    "audio/wav": ".wav",
    "audio/webm": ".weba",
    "image/jpeg": ".jpg",
    "image/png": ".png",
    "image/gif": ".gif",
    "image/webp": ".webp",
    "video/mp4": ".mp4",
    "video/webm": ".webm",
    "video/quicktime": ".mov",
    "video/3gpp": ".3gp",
    "application/pdf": ".pdf",
    "text/plain": ".txt",
    "text/html": ".html",
    "image/svg+xml": ".svg",
    "application/zip": ".zip",
    "application/octet-stream": ".bin",
}


def extension_for(mime_type: str) -> str:
    base = mime_type.split(";", 1)[0].strip().lower()
    return _EXTENSIONS.get(base) or mimetypes.guess_extension(base) or ".bin"
