"""What the engine knows about one object, and a cached copy of it ready to serve."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class MediaObject:
    """An object behind a hash, as the host app's resolver describes it.

    ``expires_at`` is a Unix timestamp (seconds) or None for objects kept forever.
    """

    media_hash: str
    key: str
    content_type: str
    size: int
    sha256: str
    expires_at: float | None = None
    filename: str = ""


@dataclass(slots=True)
class CachedMedia:
    """A small object's bytes with its response headers, built once when it enters a tier."""

    obj: MediaObject
    body: bytes
    etag: bytes = b""
    # Headers of every answer about the object (200, 206, HEAD) ...
    entity: list[tuple[bytes, bytes]] = field(default_factory=list)
    # ... and of the full 200 answer: ``entity`` plus Content-Length.
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    # ``headers`` as HTTP/1.1 header lines, for the server's fast path (serving.fastpath).
    wire: bytes = b""
