"""Finding the bytes behind a hash: L1, then Redis, then one fetch from the store.

This is the engine's core, free of HTTP: the ASGI app asks :meth:`lookup` and
turns the answer (or the exception) into a response.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Executor
from dataclasses import dataclass, replace

from . import codec
from .headers import build_cached
from .lru import GONE, BytesLRU
from .objects import CachedMedia, MediaObject
from .redis_tier import RedisTier
from .settings import MediaSettings
from .store import ObjectMissing, ObjectStore, StoreUnavailable

logger = logging.getLogger("mediacache.service")

Resolver = Callable[[str], MediaObject | None]


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


def seconds_left(obj: MediaObject, now: float | None = None) -> float:
    if obj.expires_at is None:
        return float("inf")
    return obj.expires_at - (time.time() if now is None else now)


class MediaService:
    def __init__(
        self,
        settings: MediaSettings,
        *,
        resolver: Resolver,
        store: ObjectStore,
        l1: BytesLRU,
        redis: RedisTier | None,
        executor: Executor,
    ) -> None:
        self.settings = settings
        self.resolver = resolver
        self.store = store
        self.l1 = l1
        self.redis = redis
        self.executor = executor
        self._inflight: dict[str, asyncio.Future[Lookup]] = {}
        self._background: set[asyncio.Task[None]] = set()

    async def lookup(self, media_hash: str) -> Lookup:
        cached = self.l1.get(media_hash)
        if cached is GONE:
            raise NotFound("remembered")
        if cached is not None:
            return self._fresh_hit(cached, "l1")  # type: ignore[arg-type]
        if self.redis is not None:
            cached = await self.redis.get(media_hash)
            if cached == codec.TOMBSTONE:
                self.l1.put_gone(media_hash, self.settings.NEGATIVE_TTL)
                raise NotFound("remembered")
            if cached is not None:
                lookup = self._fresh_hit(cached, "redis")  # type: ignore[arg-type]
                self.l1.put(media_hash, cached, seconds_left(lookup.obj))  # type: ignore[arg-type]
                return lookup
        return await self._single_flight(media_hash)

    def _fresh_hit(self, entry: CachedMedia, tier: str) -> Lookup:
        if seconds_left(entry.obj) <= 0:
            self.l1.discard(entry.obj.media_hash)
            raise NotFound("expired")
        return Lookup(entry.obj, entry, True, tier)

    async def _single_flight(self, media_hash: str) -> Lookup:
        """Many concurrent misses of one object cause one fetch; all share its outcome.

        The flight stays registered until the Redis fill has landed, so a request
        whose Redis GET raced the fetch cannot start a second one.
        """
        cached = self.l1.get(media_hash)  # filled while this request awaited Redis?
        if isinstance(cached, CachedMedia):
            return self._fresh_hit(cached, "l1")
        future = self._inflight.get(media_hash)
        if future is None:
            future = asyncio.get_running_loop().create_future()
            self._inflight[media_hash] = future
            self._in_background(self._fly(media_hash, future))
        try:
            async with asyncio.timeout(self.settings.SINGLE_FLIGHT_WAIT):
                return await asyncio.shield(future)
        except TimeoutError as exc:
            raise Unavailable("timed out waiting for the store") from exc

    async def _fly(self, media_hash: str, future: asyncio.Future[Lookup]) -> None:
        try:
            lookup = await self._fill(media_hash)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters that timed out must not leave a warning
            self._land(media_hash, future)
            if not isinstance(exc, Exception):
                raise
            return
        future.set_result(lookup)
        try:
            if lookup.entry is not None and self.redis is not None:
                await self.redis.put(lookup.entry, self.ttl_for(self.settings, lookup.obj))
        finally:
            self._land(media_hash, future)

    def _land(self, media_hash: str, future: asyncio.Future[Lookup]) -> None:
        if self._inflight.get(media_hash) is future:
            del self._inflight[media_hash]

    async def _fill(self, media_hash: str) -> Lookup:
        loop = asyncio.get_running_loop()
        try:
            obj = await loop.run_in_executor(self.executor, self.resolver, media_hash)
        except Exception as exc:
            logger.error("[MEDIA] resolver failed for %s: %r", media_hash, exc)
            raise Unavailable("database") from exc
        if obj is None:
            await self._remember_gone(media_hash)
            raise NotFound("unknown")
        if seconds_left(obj) <= 0:
            logger.info("[MEDIA] expired %s", media_hash)
            await self._remember_gone(media_hash)
            raise NotFound("expired")
        if obj.size > self.settings.CACHE_MAX_OBJECT_BYTES:
            return Lookup(obj, None, False, "store")
        try:
            body = await loop.run_in_executor(self.executor, self.store.read, obj.key)
        except ObjectMissing as exc:
            logger.warning("[MEDIA] missing from the store: %s key=%s", media_hash, obj.key)
            await self._remember_gone(media_hash)
            raise NotFound("missing") from exc
        except StoreUnavailable as exc:
            logger.error("[MEDIA] store unavailable for %s: %s", media_hash, exc)
            raise Unavailable("store") from exc
        if len(body) != obj.size:
            logger.warning(
                "[MEDIA] size mismatch for %s: recorded %d, stored %d",
                media_hash,
                obj.size,
                len(body),
            )
            obj = replace(obj, size=len(body))
        entry = build_cached(obj, body)
        self.l1.put(media_hash, entry, self.ttl_for(self.settings, obj))
        return Lookup(obj, entry, False, "store")

    @staticmethod
    def ttl_for(settings: MediaSettings, obj: MediaObject) -> int:
        """Seconds to keep an object in Redis: never past its expiry in the store."""
        return int(min(settings.CACHE_TTL, seconds_left(obj)))

    async def _remember_gone(self, media_hash: str) -> None:
        self.l1.put_gone(media_hash, self.settings.NEGATIVE_TTL)
        if self.redis is not None:
            self._in_background(self.redis.put_gone(media_hash, self.settings.NEGATIVE_TTL))

    def _in_background(self, coro) -> None:
        """Cache writes do not hold up the response."""
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def stream(
        self, obj: MediaObject, start: int | None = None, end: int | None = None
    ) -> AsyncIterator[bytes]:
        """Chunks of a large object straight from the store, with bounded memory."""
        loop = asyncio.get_running_loop()
        try:
            chunks = await loop.run_in_executor(
                self.executor,
                lambda: self.store.stream(obj.key, start, end, self.settings.STREAM_CHUNK_BYTES),
            )
        except ObjectMissing as exc:
            await self._remember_gone(obj.media_hash)
            raise NotFound("missing") from exc
        except StoreUnavailable as exc:
            raise Unavailable("store") from exc
        return _iterate_in_executor(loop, self.executor, chunks)

    async def aclose(self) -> None:
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        if self.redis is not None:
            await self.redis.close()


async def _iterate_in_executor(loop, executor, chunks) -> AsyncIterator[bytes]:
    try:
        while True:
            chunk = await loop.run_in_executor(executor, next, chunks, None)
            if chunk is None:
                return
            yield chunk
    finally:
        await loop.run_in_executor(executor, chunks.close)
