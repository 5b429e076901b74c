"""What the engine knows about one object, and a cached copy of it ready to serve."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class MediaObject:
    """An object behind a hash, as the host app's resolver describes it.

    ``expires_at`` is a Unix timestamp (seconds) or None for objects kept forever;
    ``uploaded_at`` (Unix seconds) is the ``Last-Modified`` of its answers, None when
    unknown: then no ``Last-Modified`` is sent and date conditions are ignored.
    """

    media_hash: str
    key: str
    content_type: str
    size: int
    sha256: str
    expires_at: float | None = None
    filename: str = ""
    uploaded_at: float | None = None
    # The Django storage that holds it when it is not the default one (a FileField's
    # own ``storage=``); the engine reads through that storage's adapter.
    storage: Any = field(default=None, compare=False, repr=False)


@dataclass(slots=True)
class CachedMedia:
    """A small object's bytes with its response headers, built once when it enters a tier."""

    obj: MediaObject
    body: bytes
    etag: bytes = b""
    # Headers of every answer about the object (200, 206, HEAD) ...
    entity: list[tuple[bytes, bytes]] = field(default_factory=list)
    # ... its validators (ETag, Last-Modified), which are all a 304 repeats ...
    validators: list[tuple[bytes, bytes]] = field(default_factory=list)
    # ... and of the full 200 answer: ``entity`` plus Content-Length.
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    # ``headers`` as HTTP/1.1 header lines, for the server's fast path (serving.fastpath).
    wire: bytes = b""


def seconds_left(obj: MediaObject, now: float | None = None) -> float:
    """Seconds until the object expires (``inf`` for objects kept forever)."""
    if obj.expires_at is None:
        return float("inf")
    return obj.expires_at - (time.time() if now is None else now)
