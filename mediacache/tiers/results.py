"""What a lookup through the tiers answers: a :class:`Lookup`, or why there is none."""

from __future__ import annotations

from dataclasses import dataclass

from mediacache.core.objects import CachedMedia, MediaObject, seconds_left
from mediacache.core.settings import MediaSettings


class NotFound(Exception):
    """No object to serve: unknown hash, expired, or gone from the store."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Unavailable(Exception):
    """A dependency needed for this miss is down: answer 503, cache nothing."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Lookup:
    """What to serve. ``entry`` is None for objects too large to cache (stream them)."""

    obj: MediaObject
    entry: CachedMedia | None
    hit: bool
    tier: str  # "l1", "redis" or "store"


def cache_ttl(settings: MediaSettings, obj: MediaObject) -> int:
    """Seconds to keep an object in Redis: never past its expiry in the store."""
    return int(min(settings.CACHE_TTL, seconds_left(obj)))
