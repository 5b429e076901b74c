"""Finding the bytes behind a hash: L1, then Redis, then one fetch from the store.

This is the engine's core, free of HTTP: the ASGI app asks :meth:`lookup` and
turns the answer (or the exception) into a response.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Executor
from dataclasses import dataclass, replace

from mediacache.core.counters import STATS
from mediacache.core.headers import build_cached
from mediacache.core.objects import CachedMedia, MediaObject
from mediacache.core.settings import MediaSettings
from mediacache.store import ObjectMissing, ObjectStore, StoreUnavailable
from mediacache.tiers import codec
from mediacache.tiers.lru import GONE, BytesLRU
from mediacache.tiers.redis import RedisTier

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
        self._listener: asyncio.Future[None] | None = None
        self._locks: dict[str, str] = {}  # media hash -> token of a fetch lock we hold

    def start(self) -> None:
        """Follow deletions announced by other processes (needs a running loop)."""
        if self._listener is None and self.redis is not None and self.l1.max_bytes > 0:
            self._listener = asyncio.ensure_future(
                self.redis.listen_for_invalidations(self.l1.invalidate, self.l1.clear)
            )

    async def lookup(self, media_hash: str, *, cached_only: bool = False) -> Lookup:
        """L1, then Redis, then one fetch from the store.

        Requests for the same object share one flight from the moment L1 misses:
        a burst of 200 cold requests makes one Redis GET and one store read in this
        process (and, through a Redis lock, one store read across processes).
        ``cached_only`` (rate-limited clients): never ask the database or the store.
        """
        cached = self.l1.get(media_hash)
        if cached is GONE:
            raise NotFound("remembered")
        if cached is not None:
            return self._fresh_hit(cached, "l1")  # type: ignore[arg-type]
        if cached_only:
            lookup = await self._from_redis(media_hash) if self.redis is not None else None
            if lookup is None:
                raise NotFound("not cached")
            return lookup
        future = self._inflight.get(media_hash)
        if future is not None:
            STATS.coalesced_wait()
            return await self._wait(future)
        future = asyncio.get_running_loop().create_future()
        self._inflight[media_hash] = future
        if self.redis is not None:
            try:
                lookup = await self._from_redis(media_hash)
            except BaseException as exc:
                self._land(media_hash, future, exc=exc)
                raise
            if lookup is not None:
                self._land(media_hash, future, result=lookup)
                return lookup
        self._in_background(self._fly(media_hash, future))
        return await self._wait(future)

    async def _from_redis(self, media_hash: str) -> Lookup | None:
        asked_at = time.monotonic()
        cached = await self.redis.get(media_hash)  # type: ignore[union-attr]
        if cached is None:
            return None
        if cached == codec.TOMBSTONE:
            self.l1.put_gone(media_hash, self.settings.NEGATIVE_TTL)
            raise NotFound("remembered")
        lookup = self._fresh_hit(cached, "redis")  # type: ignore[arg-type]
        self.l1.put(media_hash, lookup.entry, seconds_left(lookup.obj), since=asked_at)  # type: ignore[arg-type]
        return lookup

    def _land(
        self,
        media_hash: str,
        future: asyncio.Future[Lookup],
        *,
        result: Lookup | None = None,
        exc: BaseException | None = None,
    ) -> None:
        """Finish a flight: hand its outcome to the waiters and let the next one start."""
        if self._inflight.get(media_hash) is future:
            del self._inflight[media_hash]
        if future.done():
            return
        if exc is None:
            future.set_result(result)  # type: ignore[arg-type]
        else:
            future.set_exception(exc)
            future.exception()  # retrieved: a flight nobody waited for leaves no warning

    def _fresh_hit(self, entry: CachedMedia, tier: str) -> Lookup:
        if seconds_left(entry.obj) <= 0:
            self.l1.discard(entry.obj.media_hash)
            raise NotFound("expired")
        return Lookup(entry.obj, entry, True, tier)

    async def _wait(self, future: asyncio.Future[Lookup]) -> Lookup:
        try:
            async with asyncio.timeout(self.settings.SINGLE_FLIGHT_WAIT):
                return await asyncio.shield(future)
        except TimeoutError as exc:
            raise Unavailable("timed out waiting for the store") from exc

    async def _fly(self, media_hash: str, future: asyncio.Future[Lookup]) -> None:
        started = time.monotonic()
        try:
            obj = await self._resolve(media_hash)
            if obj.size > self.settings.CACHE_MAX_OBJECT_BYTES:
                lookup = Lookup(obj, None, False, "store")
            else:
                lookup = await self._fetch_once(obj, started)
            future.set_result(lookup)  # waiters answer now; the Redis fill follows
            await asyncio.sleep(0)  # let them write their responses before the 50 KB SET
            if (
                lookup.tier == "store"
                and lookup.entry is not None
                and self.redis is not None
                and not self.l1.invalidated_since(media_hash, started)
            ):
                await self.redis.put(lookup.entry, self.ttl_for(self.settings, obj))
        except Unavailable as exc:
            # The database or the store is down. This request may have skipped Redis
            # only because its breaker is open after a hiccup (any event-loop stall
            # longer than REDIS_TIMEOUT trips it, e.g. while an upload builds its S3
            # client): a cached object must not get a 503 for that. Found by the
            # fault suite (chaos/README.md); ask Redis once more, past the breaker.
            fallback = None if future.done() else await self._past_the_breaker(media_hash)
            if fallback is not None:
                self._land(media_hash, future, result=fallback)
            else:
                self._land(media_hash, future, exc=exc)
        except Exception as exc:
            if future.done():
                logger.warning("[MEDIA CACHE] fill of %s failed: %r", media_hash, exc)
            self._land(media_hash, future, exc=exc)
        finally:
            token = self._locks.pop(media_hash, None)
            if token is not None:  # only after the Redis fill: waiters elsewhere read it
                await self.redis.unlock(media_hash, token)  # type: ignore[union-attr]
            self._land(media_hash, future)

    async def _past_the_breaker(self, media_hash: str) -> Lookup | None:
        """The cached copy, asked for even while the Redis breaker is open: last resort."""
        if self.redis is None:
            return None
        cached = await self.redis.get(media_hash, past_breaker=True)
        if not isinstance(cached, CachedMedia) or seconds_left(cached.obj) <= 0:
            return None
        logger.info("[MEDIA CACHE] %s served from redis past its breaker", media_hash)
        return Lookup(cached.obj, cached, True, "redis")

    async def _resolve(self, media_hash: str) -> MediaObject:
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
        return obj

    async def _fetch_once(self, obj: MediaObject, started: float) -> Lookup:
        """Read the object, unless another process is already reading it: then wait
        for its copy in Redis. A lock taken here is released by :meth:`_fly`."""
        if self.redis is None:
            return await self._read(obj, started)
        token = secrets.token_hex(8)
        claimed = await self.redis.lock(obj.media_hash, token, self.settings.LOCK_TTL_MS)
        if claimed:
            self._locks[obj.media_hash] = token
        if claimed is not False:  # ours, or Redis cannot coordinate: read it ourselves
            return await self._read(obj, started)
        deadline = time.monotonic() + self.settings.LOCK_WAIT
        while time.monotonic() < deadline:
            await asyncio.sleep(0.02)
            cached = await self.redis.get(obj.media_hash)
            if isinstance(cached, CachedMedia):
                STATS.coalesced_wait()
                self.l1.put(obj.media_hash, cached, self.ttl_for(self.settings, obj), since=started)
                return Lookup(cached.obj, cached, False, "redis")
            if not await self.redis.is_locked(obj.media_hash):
                break  # the other fetch failed or gave up
        return await self._read(obj, started)

    async def _read(self, obj: MediaObject, started: float) -> Lookup:
        loop = asyncio.get_running_loop()
        STATS.store_request("get")
        try:
            body = await loop.run_in_executor(self.executor, self.store.read, obj.key)
        except ObjectMissing as exc:
            logger.warning("[MEDIA] missing from the store: %s key=%s", obj.media_hash, obj.key)
            await self._remember_gone(obj.media_hash)
            raise NotFound("missing") from exc
        except StoreUnavailable as exc:
            STATS.store_request("get", failed=True)
            logger.error("[MEDIA] store unavailable for %s: %s", obj.media_hash, exc)
            raise Unavailable("store") from exc
        if len(body) != obj.size:
            logger.warning(
                "[MEDIA] size mismatch for %s: recorded %d, stored %d",
                obj.media_hash,
                obj.size,
                len(body),
            )
            obj = replace(obj, size=len(body))
        entry = build_cached(obj, body)
        self.l1.put(obj.media_hash, entry, self.ttl_for(self.settings, obj), since=started)
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
        operation = "get" if start is None else "get_range"
        STATS.store_request(operation)
        try:
            chunks = await loop.run_in_executor(
                self.executor,
                lambda: self.store.stream(obj.key, start, end, self.settings.STREAM_CHUNK_BYTES),
            )
        except ObjectMissing as exc:
            await self._remember_gone(obj.media_hash)
            raise NotFound("missing") from exc
        except StoreUnavailable as exc:
            STATS.store_request(operation, failed=True)
            raise Unavailable("store") from exc
        return _iterate_in_executor(loop, self.executor, chunks)

    async def aclose(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            await asyncio.gather(self._listener, return_exceptions=True)
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
