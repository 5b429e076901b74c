"""One store read per object, however many requests miss it at once.

Two levels. In this process, requests for the same key share one future from the
moment L1 misses (:meth:`SingleFlight.start`, :meth:`SingleFlight.join`). Across
processes, the flight that reads the store holds a short Redis lock
(:meth:`SingleFlight.claim`); a process that finds the lock taken waits for the
holder's copy to appear in Redis instead of reading the store itself.

A claim returns its token; the caller releases it (:meth:`SingleFlight.release`)
after it has filled Redis, so waiters elsewhere find the copy when the lock goes.
Losing the lock (Redis restarted, the TTL ran out) costs at most one more store
read, never a wrong byte: every copy comes from the same immutable object.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass

from mediacache.core.objects import CachedMedia
from mediacache.tiers.redis import RedisTier
from mediacache.tiers.results import Lookup, Unavailable


@dataclass(frozen=True, slots=True)
class Claim:
    """The outcome of :meth:`SingleFlight.claim`.

    ``token``: the lock is ours; release it with this token once Redis is filled.
    ``cached``: Redis has the object now (another process read it): serve that.
    Neither: Redis cannot coordinate, or the other reader gave up: read the store.
    """

    token: str | None = None
    cached: CachedMedia | None = None


class SingleFlight:
    def __init__(
        self, redis: RedisTier | None, *, wait: float, lock_ttl_ms: int, lock_wait: float
    ) -> None:
        self.redis = redis
        self.wait_limit = wait
        self.lock_ttl_ms = lock_ttl_ms
        self.lock_wait = lock_wait
        self._inflight: dict[str, asyncio.Future[Lookup]] = {}

    # -- in this process ---------------------------------------------------------------

    def join(self, key: str) -> asyncio.Future[Lookup] | None:
        """The flight already under way for ``key``, if any."""
        return self._inflight.get(key)

    def start(self, key: str) -> asyncio.Future[Lookup]:
        """Open the flight for ``key``; the caller must :meth:`land` it."""
        future = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        return future

    def land(
        self,
        key: str,
        future: asyncio.Future[Lookup],
        *,
        result: Lookup | None = None,
        exc: BaseException | None = None,
    ) -> None:
        """Finish a flight: hand its outcome to the waiters and let the next one start.
        Landing an already finished flight only unregisters it."""
        if self._inflight.get(key) is future:
            del self._inflight[key]
        if future.done():
            return
        if exc is not None:
            future.set_exception(exc)
            future.exception()  # retrieved: a flight nobody waited for leaves no warning
        elif result is not None:
            future.set_result(result)
        else:
            future.set_exception(Unavailable("the fetch ended without an answer"))
            future.exception()

    async def wait(self, future: asyncio.Future[Lookup]) -> Lookup:
        """The flight's answer; :class:`Unavailable` if it takes longer than ``wait``."""
        try:
            async with asyncio.timeout(self.wait_limit):
                return await asyncio.shield(future)
        except TimeoutError as exc:
            raise Unavailable("timed out waiting for the store") from exc

    # -- across processes ----------------------------------------------------------------

    async def claim(self, key: str) -> Claim:
        """Take the right to read ``key`` from the store, or wait for whoever has it."""
        redis = self.redis
        if redis is None:
            return Claim()
        token = secrets.token_hex(8)
        claimed = await redis.lock(key, token, self.lock_ttl_ms)
        if claimed is None:  # Redis cannot tell: read it ourselves
            return Claim()
        if claimed:
            # Asked again now that the lock is ours: the previous holder may have filled
            # Redis and released between this process's first miss and its claim.
            cached = await redis.get(key)
            return Claim(token, cached if isinstance(cached, CachedMedia) else None)
        deadline = time.monotonic() + self.lock_wait
        while time.monotonic() < deadline:
            await asyncio.sleep(0.02)
            cached = await redis.get(key)
            if isinstance(cached, CachedMedia):
                return Claim(cached=cached)
            if not await redis.is_locked(key):
                # Released: it failed or gave up, or it filled Redis and released between
                # the GET above and this check. Ask once more before reading the store.
                cached = await redis.get(key)
                return Claim(cached=cached if isinstance(cached, CachedMedia) else None)
        return Claim()

    async def release(self, key: str, token: str) -> None:
        if self.redis is not None:
            await self.redis.unlock(key, token)
