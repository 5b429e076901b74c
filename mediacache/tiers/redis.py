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
from collections.abc import Callable, Sequence
from typing import TypeVar

import redis
import redis.asyncio.client
import redis.asyncio.cluster
import redis.client
import redis.cluster

from mediacache.core.counters import STATS
from mediacache.core.headers import build_cached
from mediacache.core.objects import CachedMedia
from mediacache.tiers import codec
from mediacache.tiers.invalidation import (
    GAP_FLUSH_EVERY,
    INVALIDATION_CHANNEL,
    InvalidationListener,
)
from mediacache.tiers.topology import CLIENT_FAULTS, RedisTopology, SyncClient

logger = logging.getLogger("mediacache.redis")

_SYNC_ERRORS: tuple[type[Exception], ...] = (redis.RedisError, OSError, *CLIENT_FAULTS)
_ERRORS: tuple[type[Exception], ...] = (
    *_SYNC_ERRORS,
    asyncio.TimeoutError,
    codec.CorruptEntry,
)
# Release a single-flight lock only if it is still ours.
_UNLOCK = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end"
_Pipeline = TypeVar(
    "_Pipeline",
    bound=redis.client.Pipeline
    | redis.asyncio.client.Pipeline
    | redis.cluster.ClusterPipeline
    | redis.asyncio.cluster.ClusterPipeline,
)


def lock_key(media_hash: str) -> str:
    """The object's fetch lock: the same hash tag as its cache keys (one cluster slot)."""
    return f"mediacache:fetching:{{{media_hash}}}"


class CircuitBreaker:
    """Open for ``retry_after`` seconds after ``threshold`` failures in a row.

    One slow call is not an outage: a stalled event loop (a GC pass, a burst of
    work) can push a single call past the timeout, and opening on it would also
    switch off the cross-process single-flight for a second.
    """

    def __init__(self, retry_after: float, threshold: int = 3) -> None:
        self.retry_after = retry_after
        self.threshold = threshold
        self._open_until = 0.0
        self._in_a_row = 0
        self.failures = 0

    @property
    def is_open(self) -> bool:
        return self._open_until > time.monotonic()

    def ok(self) -> None:
        self._in_a_row = 0

    def trip(self, exc: BaseException) -> None:
        self.failures += 1
        self._in_a_row += 1
        STATS.redis_error()
        if self._in_a_row < self.threshold:
            return
        if not self.is_open:
            logger.warning("[MEDIA CACHE] redis unavailable, serving without it: %r", exc)
        self._open_until = time.monotonic() + self.retry_after


class RedisTier:
    """Async access for the serving path, on any topology (``topology``)."""

    def __init__(
        self,
        topology: RedisTopology | str,
        *,
        timeout: float,
        retry_after: float,
        heartbeat: float = 0.5,
        gap_flush_every: float = GAP_FLUSH_EVERY,
    ) -> None:
        if isinstance(topology, str):
            topology = RedisTopology("standalone", url=topology)
        self.topology = topology
        self.timeout = timeout
        self.heartbeat = heartbeat
        self.gap_flush_every = gap_flush_every
        self.breaker = CircuitBreaker(retry_after)
        self.client = topology.async_client(
            timeout=timeout, connect_timeout=timeout, max_connections=256
        )
        self.listener: InvalidationListener | None = None

    async def get(
        self, media_hash: str, *, past_breaker: bool = False
    ) -> CachedMedia | bytes | None:
        """The entry, ``codec.TOMBSTONE`` for a remembered 404, or None (miss or Redis down).

        ``past_breaker``: ask even while the breaker is open (the store or database is
        down and this is the last chance to serve a cached copy instead of a 503).
        """
        if self.breaker.is_open and not past_breaker:
            return None
        # The last resort before a 503 may wait as long as a fill does.
        timeout = max(self.timeout, 1.0) if past_breaker else self.timeout
        try:
            async with asyncio.timeout(timeout):
                head, tail = await self.client.mget(
                    codec.redis_key(media_hash), codec.tail_key(media_hash)
                )
            self.breaker.ok()
            if head is None:
                return None
            if head == codec.TOMBSTONE:
                return codec.TOMBSTONE
            # redis-py types replies as bytes | str; with decode_responses off they are bytes.
            return build_cached(*codec.decode(media_hash, head, tail))  # type: ignore[arg-type]
        except codec.CorruptEntry:
            return None
        except _ERRORS as exc:
            self.breaker.trip(exc)
            return None

    async def put(self, entry: CachedMedia, ttl: int) -> None:
        head, tail = codec.encode(entry.obj, entry.body)
        await self._set(entry.obj.media_hash, head, tail, ttl)

    async def put_gone(self, media_hash: str, ttl: int) -> None:
        if ttl <= 0 or self.breaker.is_open:
            return
        try:
            async with asyncio.timeout(max(self.timeout, 1.0)):
                await self.client.set(codec.redis_key(media_hash), codec.TOMBSTONE, ex=ttl)
        except _ERRORS as exc:
            self.breaker.trip(exc)

    async def _set(self, media_hash: str, head: bytes, tail: bytes | None, ttl: int) -> None:
        if ttl <= 0 or self.breaker.is_open:
            return
        try:
            async with asyncio.timeout(max(self.timeout, 1.0)):
                await _queue_set(self.client.pipeline(False), media_hash, head, tail, ttl).execute()
        except _ERRORS as exc:
            self.breaker.trip(exc)

    async def lock(self, media_hash: str, token: str, ttl_ms: int) -> bool | None:
        """Claim the fetch of an object across processes. None: Redis cannot tell."""
        if self.breaker.is_open:
            return None
        try:
            async with asyncio.timeout(self.timeout):
                return bool(await self.client.set(lock_key(media_hash), token, nx=True, px=ttl_ms))
        except _ERRORS as exc:
            self.breaker.trip(exc)
            return None

    async def is_locked(self, media_hash: str) -> bool:
        if self.breaker.is_open:
            return False
        try:
            async with asyncio.timeout(self.timeout):
                return bool(await self.client.exists(lock_key(media_hash)))
        except _ERRORS as exc:
            self.breaker.trip(exc)
            return False

    async def unlock(self, media_hash: str, token: str) -> None:
        try:
            async with asyncio.timeout(max(self.timeout, 1.0)):
                await self.client.eval(_UNLOCK, 1, lock_key(media_hash), token)
        except _ERRORS as exc:
            self.breaker.trip(exc)

    async def listen_for_invalidations(
        self, on_invalidate: Callable[[str], None], on_gap: Callable[[], None]
    ) -> None:
        """Run forever: call ``on_invalidate(hash)`` per announced deletion, and
        ``on_gap()`` whenever messages may have been missed (:mod:`.invalidation`)."""
        self.listener = InvalidationListener(
            self.topology,
            on_invalidate=on_invalidate,
            on_gap=on_gap,
            heartbeat=self.heartbeat,
            timeout=self.timeout,
            gap_flush_every=self.gap_flush_every,
        )
        await self.listener.run()

    async def close(self) -> None:
        await self.client.aclose()


def _queue_set(
    pipe: _Pipeline, media_hash: str, head: bytes, tail: bytes | None, ttl: int
) -> _Pipeline:
    """Queue the writes of one cache fill on a (sync or async) pipeline and return it.

    ``NX``: a fill never overwrites what is there, above all the tombstone a
    deletion leaves, so a slow fill that raced a delete cannot bring it back.
    """
    if tail is not None:  # tail first: a reader that sees the head also sees its tail
        pipe.set(codec.tail_key(media_hash), tail, ex=ttl)
    pipe.set(codec.redis_key(media_hash), head, ex=ttl, nx=True)
    return pipe


class RedisWriter:
    """Blocking access for the write side (warm after upload, purge on delete)."""

    def __init__(
        self, topology: RedisTopology | str, *, timeout: float, tombstone_ttl: int
    ) -> None:
        if isinstance(topology, str):
            topology = RedisTopology("standalone", url=topology)
        self.topology = topology
        self.tombstone_ttl = tombstone_ttl
        self.client: SyncClient = topology.sync_client(
            timeout=max(timeout, 1.0), connect_timeout=max(timeout, 1.0)
        )

    def put(self, entry: CachedMedia, ttl: int) -> bool:
        if ttl <= 0:
            return False
        head, tail = codec.encode(entry.obj, entry.body)
        media_hash = entry.obj.media_hash
        try:
            _queue_set(self.client.pipeline(False), media_hash, head, tail, ttl).execute()
            return True
        except _SYNC_ERRORS as exc:
            logger.warning("[MEDIA CACHE] warm failed for %s: %r", media_hash, exc)
            return False

    def exist(self, media_hashes: Sequence[str]) -> list[bool] | None:
        """Whether Redis holds each object (one pipelined round trip); None if it is down."""
        pipe = self.client.pipeline(transaction=False)
        for media_hash in media_hashes:
            pipe.exists(codec.redis_key(media_hash))
        try:
            return [bool(n) for n in pipe.execute()]
        except _SYNC_ERRORS as exc:
            logger.warning("[MEDIA CACHE] cache state unavailable: %r", exc)
            return None

    def delete(self, media_hash: str) -> bool:
        """Replace the object in Redis by a tombstone; tell every process to drop its L1 copy."""
        return self._drop(media_hash, tombstone=True)

    def forget(self, media_hash: str) -> bool:
        """Drop the cached copy without a tombstone (the link now serves something else)."""
        return self._drop(media_hash, tombstone=False)

    def _drop(self, media_hash: str, *, tombstone: bool) -> bool:
        try:
            pipe = self.client.pipeline(transaction=False)
            if tombstone:
                pipe.set(codec.redis_key(media_hash), codec.TOMBSTONE, ex=self.tombstone_ttl)
                pipe.delete(codec.tail_key(media_hash))
            else:
                pipe.delete(codec.redis_key(media_hash))
                pipe.delete(codec.tail_key(media_hash))  # one key per DEL: cluster pipelines
            for legacy in codec.legacy_keys(media_hash):  # other slots: a DEL each
                pipe.delete(legacy)
            pipe.execute()
            # Not in the pipeline: a cluster pipeline refuses PUBLISH (it has no key).
            self.client.publish(INVALIDATION_CHANNEL, media_hash)
            return True
        except _SYNC_ERRORS as exc:
            what = "purge" if tombstone else "refresh"
            logger.error("[MEDIA CACHE] %s failed for %s: %r", what, media_hash, exc)
            return False
