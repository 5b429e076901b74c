"""Finding the bytes behind a hash: L1, then Redis, then one fetch from the store.

This is the engine's core, free of HTTP: the ASGI app asks :meth:`MediaService.lookup`
and turns the answer (or the exception) into a response. One fetch per object, in
this process and across processes, is :mod:`mediacache.tiers.singleflight`'s job.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Generator
from concurrent.futures import Executor
from dataclasses import replace
from typing import Any

from mediacache.core.counters import STATS
from mediacache.core.headers import build_cached
from mediacache.core.objects import CachedMedia, MediaObject, seconds_left
from mediacache.core.settings import MediaSettings
from mediacache.store import ObjectMissing, ObjectStore, StoreUnavailable
from mediacache.tiers.lru import BytesLRU
from mediacache.tiers.redis import RedisTier
from mediacache.tiers.results import Lookup, NotFound, Unavailable, cache_ttl
from mediacache.tiers.singleflight import SingleFlight

__all__ = ["Lookup", "MediaService", "NotFound", "Resolver", "Unavailable"]

logger = logging.getLogger("mediacache.service")

Resolver = Callable[[str], MediaObject | None]


class MediaService:
    def __init__(
        self,
        settings: MediaSettings,
        *,
        resolver: Resolver,
        store_of: Callable[[MediaObject], ObjectStore],
        l1: BytesLRU,
        redis: RedisTier | None,
        executor: Executor,
    ) -> None:
        self.settings = settings
        self.resolver = resolver
        self.store_of = store_of
        self.l1 = l1
        self.redis = redis
        self.executor = executor
        self.flight = SingleFlight(
            redis,
            wait=settings.SINGLE_FLIGHT_WAIT,
            lock_ttl_ms=settings.LOCK_TTL_MS,
            lock_wait=settings.LOCK_WAIT,
        )
        self._background: set[asyncio.Future[None]] = set()
        self._listener: asyncio.Future[None] | None = None

    def start(self) -> None:
        """Follow deletions announced by other processes (needs a running loop)."""
        if self._listener is None and self.redis is not None and self.l1.max_bytes > 0:
            self._listener = asyncio.ensure_future(
                self.redis.listen_for_invalidations(self.l1.invalidate, self.l1.clear)
            )

    async def lookup(self, media_hash: str, *, cached_only: bool = False) -> Lookup:
        """L1, then Redis, then one fetch from the store."""
        return self.from_l1(media_hash) or await self.past_l1(media_hash, cached_only=cached_only)

    def from_l1(self, media_hash: str) -> Lookup | None:
        """This process's L1 only: the hit, None when L1 does not hold it, or NotFound
        for a remembered 404 or an expired entry. The serving app asks this first, so an
        L1 hit is decided by one L1 read, before any per-client work."""
        cached = self.l1.get(media_hash)
        if cached is None:
            return None
        if isinstance(cached, CachedMedia):
            return self._fresh_hit(cached, "l1")
        raise NotFound("remembered")  # GONE

    async def past_l1(self, media_hash: str, *, cached_only: bool = False) -> Lookup:
        """Redis, then one fetch from the store, for a key L1 did not hold.

        Requests for the same object share one flight from the moment L1 misses:
        a burst of 200 cold requests makes one Redis GET and one store read in this
        process (and, through a Redis lock, one store read across processes).
        ``cached_only`` (rate-limited clients): never ask the database or the store.
        """
        if cached_only:
            lookup = await self._from_redis(media_hash) if self.redis is not None else None
            if lookup is None:
                raise NotFound("not cached")
            return lookup
        flight = self.flight
        future = flight.join(media_hash)
        if future is not None:
            STATS.coalesced_wait()
            return await flight.wait(future)
        future = flight.start(media_hash)
        if self.redis is not None:
            try:
                lookup = await self._from_redis(media_hash)
            except BaseException as exc:
                flight.land(media_hash, future, exc=exc)
                raise
            if lookup is not None:
                flight.land(media_hash, future, result=lookup)
                return lookup
        self._in_background(self._fly(media_hash, future))
        return await flight.wait(future)

    async def _from_redis(self, media_hash: str) -> Lookup | None:
        assert self.redis is not None
        asked_at = time.monotonic()
        cached = await self.redis.get(media_hash)
        if cached is None:
            return None
        if not isinstance(cached, CachedMedia):  # the tombstone of a deleted object
            self.l1.put_gone(media_hash, self.settings.NEGATIVE_TTL)
            raise NotFound("remembered")
        lookup = self._fresh_hit(cached, "redis")
        self.l1.put(media_hash, cached, seconds_left(lookup.obj), since=asked_at)
        return lookup

    def _fresh_hit(self, entry: CachedMedia, tier: str) -> Lookup:
        if seconds_left(entry.obj) <= 0:
            self.l1.discard(entry.obj.media_hash)
            raise NotFound("expired")
        return Lookup(entry.obj, entry, True, tier)

    async def _fly(self, media_hash: str, future: asyncio.Future[Lookup]) -> None:
        """Resolve, read once, answer the waiters, then fill Redis and release the lock."""
        started = time.monotonic()
        token: str | None = None
        flight = self.flight
        try:
            obj = await self._resolve(media_hash)
            if obj.size > self.settings.CACHE_MAX_OBJECT_BYTES:
                lookup = Lookup(obj, None, False, "store")
            else:
                token, lookup = await self._fetch_once(obj, started)
            future.set_result(lookup)  # waiters answer now; the Redis fill follows
            await asyncio.sleep(0)  # let them write their responses before the 50 KB SET
            if (
                lookup.tier == "store"
                and lookup.entry is not None
                and self.redis is not None
                and not self.l1.invalidated_since(media_hash, started)
            ):
                await self.redis.put(lookup.entry, cache_ttl(self.settings, obj))
        except Unavailable as exc:
            # The database or the store is down. This request may have skipped Redis
            # only because its breaker is open after a hiccup (any event-loop stall
            # longer than REDIS_TIMEOUT trips it, e.g. while an upload builds its S3
            # client): a cached object must not get a 503 for that. Found by the
            # fault suite (chaos/README.md); ask Redis once more, past the breaker.
            fallback = None if future.done() else await self._past_the_breaker(media_hash)
            if fallback is not None:
                flight.land(media_hash, future, result=fallback)
            else:
                flight.land(media_hash, future, exc=exc)
        except Exception as exc:
            if future.done():
                logger.warning("[MEDIA CACHE] fill of %s failed: %r", media_hash, exc)
            flight.land(media_hash, future, exc=exc)
        finally:
            if token is not None:  # only after the Redis fill: waiters elsewhere read it
                await flight.release(media_hash, token)
            flight.land(media_hash, future)

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

    async def _fetch_once(self, obj: MediaObject, started: float) -> tuple[str | None, Lookup]:
        """(lock token or None, the object): read it, unless another process is reading
        it already; then its copy in Redis. The caller releases the token."""
        claim = await self.flight.claim(obj.media_hash)
        if claim.cached is not None:
            STATS.coalesced_wait()
            ttl = cache_ttl(self.settings, obj)
            self.l1.put(obj.media_hash, claim.cached, ttl, since=started)
            return claim.token, Lookup(claim.cached.obj, claim.cached, False, "redis")
        try:
            return claim.token, await self._read(obj, started)
        except BaseException:
            if claim.token is not None:
                await self.flight.release(obj.media_hash, claim.token)
            raise

    async def _read(self, obj: MediaObject, started: float) -> Lookup:
        loop = asyncio.get_running_loop()
        STATS.store_request("get")
        try:
            body = await loop.run_in_executor(self.executor, self.store_of(obj).read, obj.key)
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
        self.l1.put(obj.media_hash, entry, cache_ttl(self.settings, obj), since=started)
        return Lookup(obj, entry, False, "store")

    async def _remember_gone(self, media_hash: str) -> None:
        self.l1.put_gone(media_hash, self.settings.NEGATIVE_TTL)
        if self.redis is not None:
            self._in_background(self.redis.put_gone(media_hash, self.settings.NEGATIVE_TTL))

    def _in_background(self, coro: Coroutine[Any, Any, None]) -> None:
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
                lambda: self.store_of(obj).stream(
                    obj.key, start, end, self.settings.STREAM_CHUNK_BYTES
                ),
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


async def _iterate_in_executor(
    loop: asyncio.AbstractEventLoop, executor: Executor, chunks: Generator[bytes, None, None]
) -> AsyncIterator[bytes]:
    try:
        while True:
            chunk = await loop.run_in_executor(executor, next, chunks, None)
            if chunk is None:
                return
            yield chunk
    finally:
        await loop.run_in_executor(executor, chunks.close)
