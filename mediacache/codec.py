"""The Redis value format: metadata and raw body in one string, one GET per hit.

``MC1`` + 4-byte big-endian metadata length + compact JSON + body. No pickle
(nothing executable comes out of Redis), no base64 (no 33% overhead). A
remembered 404 is the 3-byte tombstone ``MC0`` under the same key, so one GET
answers both questions.
"""

from __future__ import annotations

import json
import struct

from .objects import MediaObject

MAGIC = b"MC1"
TOMBSTONE = b"MC0"
_LEN = struct.Struct(">I")
_HEADER = len(MAGIC) + _LEN.size


class CorruptEntry(ValueError):
    """A value under ``media:`` that this version cannot read: treated as a miss."""


def redis_key(media_hash: str) -> str:
    return f"media:{media_hash}"


def encode(obj: MediaObject, body: bytes) -> bytes:
    meta = json.dumps(
        [obj.key, obj.content_type, obj.size, obj.sha256, obj.expires_at, obj.filename],
        separators=(",", ":"),
    ).encode()
    return b"".join((MAGIC, _LEN.pack(len(meta)), meta, body))


def decode(media_hash: str, value: bytes) -> tuple[MediaObject, bytes]:
    if value[:3] != MAGIC or len(value) < _HEADER:
        raise CorruptEntry(media_hash)
    (meta_len,) = _LEN.unpack_from(value, 3)
    try:
        key, content_type, size, sha256, expires_at, filename = json.loads(
            value[_HEADER : _HEADER + meta_len]
        )
    except (ValueError, TypeError) as exc:
        raise CorruptEntry(media_hash) from exc
    body = value[_HEADER + meta_len :]
    obj = MediaObject(media_hash, key, content_type, size, sha256, expires_at, filename)
    return obj, body
