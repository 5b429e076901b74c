"""Response headers for a media object, computed once per object, not per request."""

from __future__ import annotations

import re
import unicodedata
from email.utils import formatdate
from urllib.parse import quote

from mediacache.core.objects import CachedMedia, MediaObject

# Types a browser renders as a document or runs: never served as themselves.
_ACTIVE_TYPES = frozenset(
    {
        "text/html",
        "application/xhtml+xml",
        "image/svg+xml",
        "text/xml",
        "application/xml",
        "text/javascript",
        "application/javascript",
        "application/ecmascript",
        "text/ecmascript",
        "application/x-shockwave-flash",
        "application/pdf+html",
    }
)
_INLINE_PREFIXES = ("audio/", "image/", "video/")
_UNSAFE_FILENAME_CHARS = re.compile(r'[\x00-\x1f\x7f"\\/;]')

# The sandbox CSP makes even a mis-typed body inert if a browser renders it.
STATIC_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"accept-ranges", b"bytes"),
    (b"x-content-type-options", b"nosniff"),
    (b"content-security-policy", b"default-src 'none'; sandbox"),
    (b"cross-origin-resource-policy", b"cross-origin"),
)
_UNSAFE_HEADER_BYTES = re.compile(rb"[\x00\r\n]")
X_CACHE_HIT = (b"x-cache", b"HIT")
X_CACHE_MISS = (b"x-cache", b"MISS")


def served_content_type(content_type: str) -> str:
    """The type we answer with: the sniffed one, unless a browser would execute it."""
    base = content_type.split(";", 1)[0].strip().lower()
    if not base or base in _ACTIVE_TYPES or "html" in base or "script" in base:
        return "application/octet-stream"
    return content_type


def is_inline(content_type: str) -> bool:
    base = content_type.split(";", 1)[0].strip().lower()
    return base.startswith(_INLINE_PREFIXES) and base not in _ACTIVE_TYPES


def safe_filename(name: str, fallback: str) -> str:
    """A display name with no path, no control characters, no quote breaking out."""
    name = unicodedata.normalize("NFC", name or "")
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = _UNSAFE_FILENAME_CHARS.sub("_", name).strip(" .")
    return name[:150] or fallback


def content_disposition(obj: MediaObject) -> str:
    disposition = "inline" if is_inline(obj.content_type) else "attachment"
    name = safe_filename(obj.filename, obj.media_hash)
    ascii_name = name.encode("ascii", "replace").decode("ascii").replace("?", "_")
    value = f'{disposition}; filename="{ascii_name}"'
    if ascii_name != name:
        value += f"; filename*=UTF-8''{quote(name, safe='')}"
    return value


def etag_for(obj: MediaObject) -> bytes:
    """Strong ETag: the content hash (objects never change under a media hash)."""
    return f'"{obj.sha256 or obj.media_hash}"'.encode("ascii")


def last_modified(obj: MediaObject) -> int | None:
    """The upload time in whole seconds (an HTTP-date's resolution), None when unknown."""
    return None if obj.uploaded_at is None else int(obj.uploaded_at)


def validator_headers(obj: MediaObject) -> list[tuple[bytes, bytes]]:
    """ETag and, when the upload time is known, Last-Modified: what a 304 repeats."""
    validators = [(b"etag", etag_for(obj))]
    seconds = last_modified(obj)
    if seconds is not None:
        validators.append((b"last-modified", formatdate(seconds, usegmt=True).encode("ascii")))
    return validators


def entity_headers(
    obj: MediaObject, validators: list[tuple[bytes, bytes]] | None = None
) -> list[tuple[bytes, bytes]]:
    """Headers shared by every answer about this object (200, 206, HEAD)."""
    return [
        (b"content-type", served_content_type(obj.content_type).encode("latin-1", "replace")),
        *(validator_headers(obj) if validators is None else validators),
        (b"content-disposition", content_disposition(obj).encode("ascii")),
        *STATIC_HEADERS,
    ]


def build_cached(obj: MediaObject, body: bytes) -> CachedMedia:
    """Wrap bytes and precompute the headers of a full answer."""
    validators = validator_headers(obj)
    entity = entity_headers(obj, validators)
    headers = [*entity, (b"content-length", str(len(body)).encode("ascii"))]
    wire = b"".join(b"%s: %s\r\n" % pair for pair in headers)
    if any(_UNSAFE_HEADER_BYTES.search(value) for _name, value in headers):
        wire = b""  # never written raw: the server's own header checks see it
    return CachedMedia(
        obj=obj,
        body=body,
        etag=validators[0][1],
        entity=entity,
        validators=validators,
        headers=headers,
        wire=wire,
    )
