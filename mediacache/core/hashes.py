"""Media hashes: the unguessable part of a short link, and the path forms that carry it."""

from __future__ import annotations

import re
import secrets

# 16 random bytes -> 22 URL-safe characters, 128 bits of entropy (the floor is 96).
HASH_BYTES = 16
# Accept what existing deployments may hold too (max_length=32), but nothing that
# could be a path, a dot-segment or an encoded character.
_HASH_PATTERN = r"[A-Za-z0-9_-]{16,32}"
_HASH_RE = re.compile(_HASH_PATTERN)
# /media/{hash} or /media/{hash}.{ext}; the extension only helps clients that sniff
# the name (Evolution's document regex) and never changes which object is served.
_MEDIA_PATH_RE = re.compile(rf"/media/({_HASH_PATTERN})(?:\.[A-Za-z0-9]{{1,10}})?")
# /media/{hash}/original (optionally .ext): the upload as it came, when the short
# link serves a WhatsApp-ready variant (a voice note as Ogg Opus, an image as JPEG).
ORIGINAL_SUFFIX = "/original"
_ORIGINAL_PATH_RE = re.compile(
    rf"/media/({_HASH_PATTERN}){ORIGINAL_SUFFIX}(?:\.[A-Za-z0-9]{{1,10}})?"
)


def new_media_hash() -> str:
    """A fresh hash from the OS's CSPRNG."""
    return secrets.token_urlsafe(HASH_BYTES)


def is_media_hash(value: str) -> bool:
    return _HASH_RE.fullmatch(value) is not None


def hash_from_path(path: str) -> str | None:
    """The hash in a ``/media/...`` path, or None when the path is not a media link."""
    match = _MEDIA_PATH_RE.fullmatch(path)
    return match.group(1) if match else None


def media_key_from_path(path: str) -> str | None:
    """The cache and resolver key of a ``/media/...`` path: ``hash`` or ``hash/original``.

    The original of an object is a separate cache entry (``media:{hash}/original``
    in Redis); the resolver receives the same key and tells the two apart.
    """
    match = _MEDIA_PATH_RE.fullmatch(path)
    if match is not None:
        return match.group(1)
    match = _ORIGINAL_PATH_RE.fullmatch(path)
    return match.group(1) + ORIGINAL_SUFFIX if match else None


def original_key(media_hash: str) -> str:
    return media_hash + ORIGINAL_SUFFIX


def split_media_key(key: str) -> tuple[str, bool]:
    """``hash/original`` -> (hash, True); ``hash`` -> (hash, False)."""
    if key.endswith(ORIGINAL_SUFFIX):
        return key[: -len(ORIGINAL_SUFFIX)], True
    return key, False
