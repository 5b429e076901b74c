"""Deletions announced to every process, and a heartbeat that proves the channel works.

A purge publishes the hash on ``INVALIDATION_CHANNEL``; every process drops its L1
copy. Plain pub/sub loses what is published while a subscriber is away, and a
connection can die without a word (a partition, a master that failed over behind a
proxy), so each listener sends itself a heartbeat through the same Redis every
``heartbeat`` seconds, by the same path a purge takes (a command on the current
master or cluster node, then the server's pub/sub fan-out). A heartbeat not back
within ``LATE_AFTER`` heartbeats, or an error, starts a *gap*; a fresh subscription
ends it. The caller's L1 is flushed (``on_gap``) when a gap starts, every
``GAP_FLUSH_EVERY`` seconds while it lasts, and when it ends -- not at each failed
reconnection attempt: those flushes bought nothing (what L1 holds during a gap came
from the store or Redis after the last flush) and cost a store read per hot object
and process each (in ``make scale``'s Sentinel failover, 3.3 s down, each of the 4
processes flushed about 6 times: 366 S3 GETs for 77 objects). Late is
not lost: a Redis that answers slowly (+500 ms a hop) delays purges as much as
heartbeats, and flushing L1 then would only push every hit onto that slow Redis.

How long a deleted object can stay in another process's L1, its purge announced:

- channel up: until the message arrives (milliseconds);
- channel broken silently: ``(1 + LATE_AFTER)`` heartbeats (2 s by default), the gap
  detection, then the flush;
- channel broken with an error, or down: the purge could only be announced once Redis
  took it again, and the listener subscribes again (and flushes) at most
  ``RECONNECT_MAX`` (1 s) plus one subscription after Redis answers; a purge that
  Redis could not take at all (logged as failed) is gone from the L1 of a process
  whose channel is down within ``GAP_FLUSH_EVERY`` (5 s, the longest wait between two
  flushes before this schedule, when each attempt flushed and attempts backed off to
  5 s); where the channel stayed up, only ``L1_TTL`` bounds it, as it always did.

Classic pub/sub on every topology: on a Redis Cluster a classic PUBLISH reaches the
subscribers of every node over the cluster bus, so one subscription on any node
sees every purge, whichever node the purge was sent to.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable

import redis

from mediacache.tiers.topology import CLIENT_FAULTS, AsyncClient, RedisTopology, async_pubsub

logger = logging.getLogger("mediacache.redis")

INVALIDATION_CHANNEL = "mediacache:invalidate"
HEARTBEAT_PREFIX = "mediacache:heartbeat:"
LATE_AFTER = 3  # heartbeats
RECONNECT_FIRST = 0.1  # seconds before the first attempt after a working subscription
RECONNECT_MAX = 1.0  # the longest wait between two attempts: back within 1 s of Redis
GAP_FLUSH_EVERY = 5.0  # seconds between two L1 flushes while the channel stays down
# (the default of MEDIA_INVALIDATION_GAP_FLUSH_EVERY)


class Gap(Exception):
    """Messages may have been missed."""


# What ends a subscription: Redis going away, a late heartbeat, a client fault.
_LOST: tuple[type[Exception], ...] = (redis.RedisError, OSError, TimeoutError, Gap, *CLIENT_FAULTS)


class InvalidationListener:
    """Follows ``INVALIDATION_CHANNEL`` for one process, forever (cancel to stop)."""

    def __init__(
        self,
        topology: RedisTopology,
        *,
        on_invalidate: Callable[[str], None],
        on_gap: Callable[[], None],
        heartbeat: float,
        timeout: float,
        gap_flush_every: float = GAP_FLUSH_EVERY,
    ) -> None:
        self.topology = topology
        self.on_invalidate = on_invalidate
        self.on_gap = on_gap
        self.heartbeat = heartbeat
        self.late = heartbeat * LATE_AFTER
        self.timeout = max(timeout, 1.0)
        self.gap_flush_every = gap_flush_every
        self.channel = f"{HEARTBEAT_PREFIX}{secrets.token_hex(6)}"
        self.gaps = 0  # L1 flushes asked for
        self.attempts = 0  # subscriptions tried (tests, logs)
        self.node: tuple[str, int] | None = None  # where the subscription is; None: a gap
        self._flushed_at = time.monotonic()  # nothing in L1 yet is older than this

    async def run(self) -> None:
        # Its own client, without the serving path's short socket timeout: a heartbeat
        # late by 500 ms is late, not lost. Heartbeats go where purges go (the master,
        # or any cluster node), as commands on this client.
        client = self.topology.async_client(timeout=None, connect_timeout=self.timeout)
        flusher = asyncio.ensure_future(self._flush_while_down())
        backoff = RECONNECT_FIRST
        try:
            while True:
                try:
                    self.attempts += 1
                    await self._follow(client)
                except _LOST as exc:
                    if self.node is not None:  # the gap starts: flush once, retry soon
                        self.node = None
                        backoff = RECONNECT_FIRST
                        self._gap()
                        logger.warning(
                            "[MEDIA CACHE] invalidation channel lost, L1 flushed: %r", exc
                        )
                        # A new client: the old one's pooled connections may be to a
                        # server that died; the first heartbeat on one would end the
                        # next subscription at once (a second gap, a second flush).
                        with contextlib.suppress(*_LOST):
                            await client.aclose()
                        client = self.topology.async_client(
                            timeout=None, connect_timeout=self.timeout
                        )
                    else:  # still down (a failover under way): L1 was flushed already
                        backoff = min(backoff * 2, RECONNECT_MAX)
                        logger.info("[MEDIA CACHE] invalidation channel still down: %r", exc)
                    await asyncio.sleep(backoff)
        finally:
            flusher.cancel()
            await asyncio.gather(flusher, return_exceptions=True)
            await client.aclose()

    def _gap(self) -> None:
        self._flushed_at = time.monotonic()
        self.gaps += 1
        self.on_gap()

    async def _flush_while_down(self) -> None:
        """While the channel is down, flush L1 every ``gap_flush_every`` seconds: a purge
        Redis could not announce must not live in L1 for as long as the outage."""
        while True:
            if self.node is not None:
                wait = self.gap_flush_every
            else:
                wait = self._flushed_at + self.gap_flush_every - time.monotonic()
            await asyncio.sleep(max(wait, 0.01))
            if self.node is None and time.monotonic() - self._flushed_at >= self.gap_flush_every:
                self._gap()
                logger.info("[MEDIA CACHE] invalidation channel still down, L1 flushed")

    async def _follow(self, client: AsyncClient) -> None:
        async with asyncio.timeout(self.timeout):
            pubsub = await async_pubsub(client)
        try:
            async with asyncio.timeout(self.timeout):
                await pubsub.subscribe(INVALIDATION_CHANNEL, self.channel)
                confirmed = 0
                while confirmed < 2:  # from here on nothing published is lost to us
                    message = await pubsub.get_message(timeout=self.timeout)
                    if message is not None and message["type"] == "subscribe":
                        confirmed += 1
            connection = pubsub.connection
            self._gap()  # what was announced before the subscription is missed: the gap ends
            self.node = (connection.host, connection.port) if connection is not None else ("", 0)
            if self.attempts > 1:
                logger.info("[MEDIA CACHE] invalidation channel back on %s, L1 flushed", self.node)
            await self._listen(client, pubsub)
        finally:
            await pubsub.aclose()  # type: ignore[no-untyped-call]  # unannotated in redis-py

    async def _listen(self, client: AsyncClient, pubsub: redis.asyncio.client.PubSub) -> None:
        beat = 0
        sent_at: float | None = None  # of the heartbeat not back yet
        due = time.monotonic()
        while True:
            now = time.monotonic()
            if sent_at is None and now >= due:
                beat += 1
                sent_at = now
                async with asyncio.timeout(self.late):
                    await client.publish(self.channel, str(beat))
            elif sent_at is not None and now - sent_at > self.late:
                raise Gap(f"heartbeat not back within {self.late:g} s")
            wait = (sent_at + self.late if sent_at is not None else due) - time.monotonic()
            message = await pubsub.get_message(timeout=max(wait, 0.001))
            if message is None or message["type"] != "message":
                continue
            channel = message["channel"].decode()
            if channel == INVALIDATION_CHANNEL:
                self.on_invalidate(message["data"].decode())
            elif channel == self.channel and message["data"] == str(beat).encode():
                assert sent_at is not None
                due, sent_at = sent_at + self.heartbeat, None
