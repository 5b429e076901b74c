"""Response headers for a media object, computed once per object, not per request."""

from __future__ import annotations

import re
import unicodedata
from email.utils import formatdate
from urllib.parse import quote

from mediacache.core.hashes import ORIGINAL_SUFFIX, split_media_key
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


def edge_tag(media_key: str) -> str:
    """The shared caches' tag of one object: ``media-<hash>`` for ``/media/<hash>`` (and
    its ``.ext`` forms), ``media-<hash>.original`` for ``/media/<hash>/original``.

    A hash never holds a dot, so no tag is another's. A purge names these tags
    (``mediacache.edge``), which reach every URL form and query string the edge keyed
    the object under. Some CDNs compare tags case-insensitively (Cloudflare): two
    hashes that differ only in case then share a purge, which costs a miss, never a
    stale byte.
    """
    media_hash, original = split_media_key(media_key)
    return f"media-{media_hash}.original" if original else f"media-{media_hash}"


def edge_headers(obj: MediaObject) -> list[tuple[bytes, bytes]]:
    """The object's tag for shared caches: ``Surrogate-Key`` (Fastly, Varnish xkey) and
    ``Cache-Tag`` (Cloudflare). Both are for the edge; the edge config strips them."""
    tag = edge_tag(obj.media_hash).encode("ascii", "replace")
    return [(b"surrogate-key", tag), (b"cache-tag", tag)]


def is_immutable(media_key: str) -> bool:
    """Whether the bytes under this link are final for as long as it lives.

    ``/media/<hash>/original`` is the upload as it came: it never changes, it can only
    go (a delete purges the edge; a browser keeps what it has until ``max-age`` either
    way). ``/media/<hash>`` is not: it serves the upload until a WhatsApp-ready variant
    is built for it later (``build_media_variants``), then the variant, under the same
    link -- so it is revalidated (a cheap 304 while unchanged), never ``immutable``.
    """
    return media_key.endswith(ORIGINAL_SUFFIX)  # asked per L1 hit: no split, no tuple


class CacheControl:
    """``Cache-Control`` of a media answer: ``public, max-age=M, s-maxage=S``, plus
    ``immutable`` where :func:`is_immutable` says so.

    ``max-age`` (browsers, and the edge without ``s-maxage`` support) is at most
    ``max_age`` (``CACHE_TTL``): nothing purges a browser. ``s-maxage`` (shared caches:
    CDNs, Varnish) is at most ``edge_max_age`` (``EDGE_MAX_AGE``): a delete purges the
    edge through ``mediacache.edge``, and this bounds how long a purge that failed
    leaves an object there. Neither outlives the object. Most objects are further than
    both from their expiry: their value is built once, here, not per request.
    """

    __slots__ = ("edge_max_age", "far", "far_immutable", "longest", "max_age")

    def __init__(self, max_age: int, edge_max_age: int) -> None:
        self.max_age = max(0, max_age)
        self.edge_max_age = max(0, edge_max_age)
        self.longest = max(self.max_age, self.edge_max_age)
        self.far = self._format(self.max_age, self.edge_max_age, immutable=False)
        self.far_immutable = self._format(self.max_age, self.edge_max_age, immutable=True)

    @staticmethod
    def _format(max_age: int, edge_max_age: int, *, immutable: bool) -> bytes:
        value = b"public, max-age=%d, s-maxage=%d" % (max_age, edge_max_age)
        return value + b", immutable" if immutable else value

    def value(self, left: float, immutable: bool) -> bytes:
        """For an object ``left`` seconds from its expiry (``inf``: kept forever)."""
        if left >= self.longest:
            return self.far_immutable if immutable else self.far
        left = max(0.0, left)
        return self._format(
            int(min(self.max_age, left)), int(min(self.edge_max_age, left)), immutable=immutable
        )


def entity_headers(
    obj: MediaObject, validators: list[tuple[bytes, bytes]] | None = None
) -> list[tuple[bytes, bytes]]:
    """Headers shared by every answer about this object (200, 206, HEAD)."""
    return [
        (b"content-type", served_content_type(obj.content_type).encode("latin-1", "replace")),
        *(validator_headers(obj) if validators is None else validators),
        (b"content-disposition", content_disposition(obj).encode("ascii")),
        *STATIC_HEADERS,
        *edge_headers(obj),
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
