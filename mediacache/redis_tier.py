"""The shared Redis tier, failing open.

Redis is an accelerator, never a dependency of correctness: every error is a
miss, logged and counted, and after one the tier stays out of the way for
``retry_after`` seconds so that requests do not each pay the timeout while
Redis is down. One overall deadline per call bounds the wait (connect, pool,
read), and redis-py's own retries are off for the same reason.
"""

from __future__ import annotations

import asyncio
import logging
import time

import redis
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry

from . import codec
from .headers import build_cached
from .objects import CachedMedia

logger = logging.getLogger("mediacache.redis")

_ERRORS = (redis.RedisError, OSError, asyncio.TimeoutError, codec.CorruptEntry)


class CircuitBreaker:
    """Open for ``retry_after`` seconds after a failure; then lets one call try."""

    def __init__(self, retry_after: float) -> None:
        self.retry_after = retry_after
        self._open_until = 0.0
        self.failures = 0

    @property
    def is_open(self) -> bool:
        return self._open_until > time.monotonic()

    def trip(self, exc: BaseException) -> None:
        self.failures += 1
        if not self.is_open:
            logger.warning("[MEDIA CACHE] redis unavailable, serving without it: %r", exc)
        self._open_until = time.monotonic() + self.retry_after

    def reset(self) -> None:
        self._open_until = 0.0


class RedisTier:
    """Async access for the serving path."""

    def __init__(self, url: str, *, timeout: float, retry_after: float) -> None:
        self.timeout = timeout
        self.breaker = CircuitBreaker(retry_after)
        self.client = aioredis.Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=AsyncRetry(NoBackoff(), 0),
            max_connections=256,
        )

    async def get(self, media_hash: str) -> CachedMedia | bytes | None:
        """The entry, ``codec.TOMBSTONE`` for a remembered 404, or None (miss or Redis down)."""
        if self.breaker.is_open:
            return None
        try:
            async with asyncio.timeout(self.timeout):
                value = await self.client.get(codec.redis_key(media_hash))
            if value is None:
                return None
            if value == codec.TOMBSTONE:
                return codec.TOMBSTONE
            obj, body = codec.decode(media_hash, value)
            return build_cached(obj, body)
        except _ERRORS as exc:
            self.breaker.trip(exc)
            return None

    async def put(self, entry: CachedMedia, ttl: int) -> None:
        await self._set(entry.obj.media_hash, codec.encode(entry.obj, entry.body), ttl)

    async def put_gone(self, media_hash: str, ttl: int) -> None:
        await self._set(media_hash, codec.TOMBSTONE, ttl)

    async def _set(self, media_hash: str, value: bytes, ttl: int) -> None:
        if ttl <= 0 or self.breaker.is_open:
            return
        try:
            async with asyncio.timeout(max(self.timeout, 1.0)):
                await self.client.set(codec.redis_key(media_hash), value, ex=ttl)
        except _ERRORS as exc:
            self.breaker.trip(exc)

    async def close(self) -> None:
        await self.client.aclose()


class RedisWriter:
    """Blocking access for the write side (warm after upload, purge on delete)."""

    def __init__(self, url: str, *, timeout: float) -> None:
        self.client = redis.Redis.from_url(
            url,
            socket_timeout=max(timeout, 1.0),
            socket_connect_timeout=max(timeout, 1.0),
            retry=Retry(NoBackoff(), 0),
        )

    def put(self, entry: CachedMedia, ttl: int) -> bool:
        if ttl <= 0:
            return False
        try:
            self.client.set(
                codec.redis_key(entry.obj.media_hash), codec.encode(entry.obj, entry.body), ex=ttl
            )
            return True
        except (redis.RedisError, OSError) as exc:
            logger.warning("[MEDIA CACHE] warm failed for %s: %r", entry.obj.media_hash, exc)
            return False

    def delete(self, media_hash: str) -> bool:
        try:
            self.client.delete(codec.redis_key(media_hash))
            return True
        except (redis.RedisError, OSError) as exc:
            logger.error("[MEDIA CACHE] purge failed for %s: %r", media_hash, exc)
            return False
