"""Deletions announced to every process, and a heartbeat that proves the channel works.

A purge publishes the hash on ``INVALIDATION_CHANNEL``; every process drops its L1
copy. Plain pub/sub loses what is published while a subscriber is away, and a
connection can die without a word (a partition, a master that failed over behind a
proxy), so each listener sends itself a heartbeat through the same Redis every
``heartbeat`` seconds, by the same path a purge takes (a command on the current
master or cluster node, then the server's pub/sub fan-out). A heartbeat not back
within ``LATE_AFTER`` heartbeats, an error, or a fresh subscription is a *gap*: the
caller flushes its L1 and the listener subscribes again. A deleted object is so
served from L1 for at most ``1 + LATE_AFTER`` heartbeats after the channel broke
silently (at once when it broke with an error). Late is not lost: a Redis that
answers slowly (+500 ms a hop) delays purges as much as heartbeats, and flushing L1
then would only push every hit onto that slow Redis.

Classic pub/sub on every topology: on a Redis Cluster a classic PUBLISH reaches the
subscribers of every node over the cluster bus, so one subscription on any node
sees every purge, whichever node the purge was sent to.
"""

from __future__ import annotations

import asyncio
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
    ) -> None:
        self.topology = topology
        self.on_invalidate = on_invalidate
        self.on_gap = on_gap
        self.heartbeat = heartbeat
        self.late = heartbeat * LATE_AFTER
        self.timeout = max(timeout, 1.0)
        self.channel = f"{HEARTBEAT_PREFIX}{secrets.token_hex(6)}"
        self.gaps = 0
        self.node: tuple[str, int] | None = None  # where the subscription is (tests, logs)

    async def run(self) -> None:
        # Its own client, without the serving path's short socket timeout: a heartbeat
        # late by 500 ms is late, not lost. Heartbeats go where purges go (the master,
        # or any cluster node), as commands on this client.
        client = self.topology.async_client(timeout=None, connect_timeout=self.timeout)
        backoff = 0.1
        try:
            while True:
                try:
                    await self._follow(client)
                except _LOST as exc:
                    # A subscription that worked: retry at once; else back off (Redis
                    # down, a failover under way), up to 5 s between attempts.
                    backoff = 0.1 if self.node is not None else min(backoff * 2, 5.0)
                    self.node = None
                    self._gap()
                    logger.warning("[MEDIA CACHE] invalidation channel lost: %r", exc)
                    await asyncio.sleep(backoff)
        finally:
            await client.aclose()

    def _gap(self) -> None:
        self.gaps += 1
        self.on_gap()

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
            self.node = (connection.host, connection.port) if connection is not None else None
            self._gap()  # whatever was announced before the subscription is
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
