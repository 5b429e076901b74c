"""The tiers on each Redis topology: standalone, Sentinel (master + replica + three
sentinels), a 3-master Cluster and a Cluster of 3 masters with one replica each, each
real ``redis-server`` processes started by ``tests/redis_topologies.py`` on free
loopback ports for this module.

Each server below has its own engine (own L1, own single-flight, own invalidation
listener), as separate replicas would; they share the topology, PostgreSQL and S3.
Figures (delete-visible p99, gap detection) are printed (``-s``) and recorded as
test properties; only generous functional bounds are asserted.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from mediacache.core.counters import HIT_L1, HIT_REDIS, STATS
from mediacache.core.headers import build_cached
from mediacache.core.objects import MediaObject
from mediacache.tiers import codec
from mediacache.tiers.invalidation import InvalidationListener
from mediacache.tiers.redis import RedisTier, lock_key
from mediacache.tiers.singleflight import SingleFlight
from mediacache.tiers.topology import RedisTopology
from tests.conftest import s3_storage_settings, upload
from tests.faults import FaultProxy
from tests.redis_topologies import Cluster, ClusterWithReplicas, Topology, running, slowed
from tests.servers import RunningServer, serve_asgi
from tests.test_tiers import _burst, s3_gets

KINDS = ["standalone", "sentinel", "cluster", "cluster-replicas"]


@pytest.fixture(scope="module", params=KINDS)
def topology(request: pytest.FixtureRequest) -> Iterator[Topology]:
    # Patient: a node frozen for 2 s (the silent-gap test) is not failed over here;
    # tests/test_redis_failover.py kills masters on topologies of its own.
    with running(request.param, patience_ms=5000) as started:
        yield started


@pytest.fixture
def redis_on(topology: Topology) -> Topology:
    topology.flush()
    return topology


def engine_settings(topology: Topology, **overrides: object) -> dict[str, object]:
    """The engine's settings on ``topology`` (the suite's own REDIS_URL switched off)."""
    return {"REDIS_URL": "", **topology.settings(), **overrides}


@dataclass
class Replica:
    engine: Any
    server: RunningServer
    app: Any

    @property
    def url(self) -> str:
        return self.server.url

    def listener(self) -> InvalidationListener | None:
        media_app = getattr(self.app, "media_app", None)
        if media_app is None or media_app.service.redis is None:
            return None
        listener: InvalidationListener | None = media_app.service.redis.listener
        return listener

    def wait_subscribed(self, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while (listener := self.listener()) is None or listener.node is None:
            assert time.monotonic() < deadline, "the invalidation listener never subscribed"
            time.sleep(0.02)


@contextlib.contextmanager
def replica(topology: Topology, **overrides: object) -> Iterator[Replica]:
    """One replica of the service (its own engine, L1, listener) on ``topology``."""
    from config.asgi import build_application
    from mediacache.engine import Engine

    store = overrides.pop("store", None)
    engine = Engine.from_django(store=store, **engine_settings(topology, **overrides))  # type: ignore[arg-type]
    app = build_application(engine)
    with serve_asgi(app) as server:
        yield Replica(engine, server, app)


def topology_of(topology: Topology) -> RedisTopology:
    """What the engine makes of the topology's settings."""
    from mediacache.core.settings import MediaSettings

    found = RedisTopology.from_settings(MediaSettings(**engine_settings(topology)))
    assert found is not None
    return found


def tier_on(topology: Topology, **kwargs: float) -> RedisTier:
    return RedisTier(topology_of(topology), timeout=kwargs.get("timeout", 1.0), retry_after=1.0,
                     heartbeat=kwargs.get("heartbeat", 0.5))  # fmt: skip


def media_object(media_hash: str, body: bytes) -> MediaObject:
    return MediaObject(
        media_hash, f"chat/{media_hash}", "audio/ogg", len(body), "", time.time() + 3600, "v.ogg"
    )


# --- keys and commands ---------------------------------------------------------------


def test_every_key_of_an_object_shares_one_slot(redis_on: Topology) -> None:
    from redis.crc import key_slot

    for media_hash in ("AbCdEfGhIjKlMnOpQrStUv", "AbCdEfGhIjKlMnOpQrStUv/original"):
        keys = [codec.redis_key(media_hash), codec.tail_key(media_hash), lock_key(media_hash)]
        assert len({key_slot(k.encode()) for k in keys}) == 1


def test_a_purge_also_drops_the_keys_of_the_previous_format(redis_on: Topology) -> None:
    """During a rolling upgrade, replicas of the previous version still read
    ``media:HASH``: a purge from this version must not leave the object there."""
    from mediacache.tiers.redis import RedisWriter

    media_hash = "UpgradedPurge000000001"
    client = redis_on.client()
    writer = RedisWriter(topology_of(redis_on), timeout=1.0, tombstone_ttl=60)
    try:
        for legacy in codec.legacy_keys(media_hash):
            client.set(legacy, b"MC1...")
        assert writer.delete(media_hash)
        assert [client.exists(k) for k in codec.legacy_keys(media_hash)] == [0, 0]
        assert client.get(codec.redis_key(media_hash)) == codec.TOMBSTONE
    finally:
        writer.client.close()
        client.close()


def test_big_values_are_split_and_read_back_whole(redis_on: Topology) -> None:
    body = bytes(range(256)) * 200  # 51,200 bytes: head and tail, one MGET

    async def scenario() -> None:
        tier = tier_on(redis_on)
        try:
            await tier.put(build_cached(media_object("SplitValue000000000001", body), body), 60)
            cached = await tier.get("SplitValue000000000001")
            assert cached is not None
            assert not isinstance(cached, bytes)
            assert cached.body == body
        finally:
            await tier.close()

    asyncio.run(scenario())
    client = redis_on.client()
    try:
        assert client.exists(codec.tail_key("SplitValue000000000001"))
    finally:
        client.close()


def test_lock_claim_and_release_on_every_topology(redis_on: Topology) -> None:
    async def scenario() -> None:
        tier = tier_on(redis_on)
        flight = SingleFlight(tier, wait=5, lock_ttl_ms=5000, lock_wait=3)
        try:
            assert await tier.lock("HeldElsewhere000000001", "other-process", 5000)
            waiting = asyncio.ensure_future(flight.claim("HeldElsewhere000000001"))
            await asyncio.sleep(0.1)
            assert not waiting.done()
            body = b"voice" * 100
            await tier.put(build_cached(media_object("HeldElsewhere000000001", body), body), 60)
            claim = await asyncio.wait_for(waiting, 3)
            assert claim.token is None
            assert claim.cached is not None
            assert claim.cached.body == body
            # A claim of a free lock is ours; the unlock script releases only our token.
            claim = await flight.claim("FreeLock00000000000001")
            assert claim.token is not None
            await tier.unlock("FreeLock00000000000001", "not-ours")
            assert await tier.is_locked("FreeLock00000000000001")
            await flight.release("FreeLock00000000000001", claim.token)
            assert not await tier.is_locked("FreeLock00000000000001")
        finally:
            await tier.close()

    asyncio.run(scenario())


def test_reads_never_go_to_a_cluster_replica() -> None:
    """A replica can lag a purge: a read served by it could bring a deleted object back.
    With every replica frozen (SIGSTOP: a read sent there would time out), the tier
    still reads what it wrote, and the tombstone a purge wrote, at once."""
    from mediacache.tiers.redis import RedisWriter

    body = b"primary!" * 300
    media_hash = "ReplicaRead0000000001"
    with running("cluster-replicas", patience_ms=5000) as cluster:
        assert isinstance(cluster, ClusterWithReplicas)
        frozen = cluster.replicas()
        assert len(frozen) == 3

        async def scenario() -> None:
            tier = tier_on(cluster)
            writer = RedisWriter(topology_of(cluster), timeout=1.0, tombstone_ttl=60)
            try:
                assert tier.client.load_balancing_strategy is None
                assert writer.client.load_balancing_strategy is None
                await tier.put(build_cached(media_object(media_hash, body), body), 60)
                for node in frozen:
                    assert node.process is not None
                    os.kill(node.process.pid, signal.SIGSTOP)
                cached = await tier.get(media_hash)
                assert cached is not None
                assert not isinstance(cached, bytes)
                assert cached.body == body
                assert writer.delete(media_hash)
                assert await tier.get(media_hash) == codec.TOMBSTONE
                assert tier.breaker.failures == 0
            finally:
                for node in frozen:
                    if node.process is not None:
                        os.kill(node.process.pid, signal.SIGCONT)
                writer.client.close()
                await tier.close()

        asyncio.run(scenario())


# --- across replicas -----------------------------------------------------------------


def test_stampede_of_200_cold_requests_across_two_replicas_reads_s3_once(
    redis_on: Topology, api, s3_server, record_property
) -> None:
    body = bytes(range(256)) * 300
    created = upload(api, body, "blob.bin")
    with (
        replica(redis_on, REDIS_TIMEOUT=2.0) as first,
        replica(redis_on, REDIS_TIMEOUT=2.0) as second,
    ):
        s3_server.start_recording()
        path = f"/media/{created['media_hash']}"
        urls = [f"{(first, second)[i % 2].url}{path}" for i in range(200)]
        responses = asyncio.run(_burst(urls))
        assert all(r.status_code == 200 and r.content == body for r in responses)
        gets = s3_gets(s3_server)
        record_property(f"stampede_s3_gets_{redis_on.kind}", gets)
        print(f"\n[{redis_on.kind}] 200 cold GETs over 2 replicas: {gets} S3 GET(s)")
        assert gets == 1


def test_a_lost_lock_costs_one_more_store_read_never_a_wrong_byte(
    redis_on: Topology, api, s3_server, record_property
) -> None:
    """Replica A reads a cold object from a slow S3 (300 ms a hop, through the fault
    proxy) holding the fetch lock; the lock vanishes (a failover lost it); 50 requests
    then arrive at both replicas. B takes the lock and reads S3 too: two S3 GETs in
    all, one more than with the lock, and every body right."""
    from concurrent.futures import ThreadPoolExecutor

    from django.core.files.storage import storages

    from mediacache.store import S3Store

    body = os.urandom(70_000)
    created = upload(api, body, "lost-lock.bin")
    proxy = FaultProxy(int(s3_server.url.rsplit(":", 1)[1])).start()
    try:
        slow = S3Store(
            storages.create_storage(s3_storage_settings(f"http://127.0.0.1:{proxy.port}"))
        )
        with (
            replica(redis_on, store=slow, REDIS_TIMEOUT=2.0) as a,
            replica(redis_on, store=slow, REDIS_TIMEOUT=2.0) as b,
            ThreadPoolExecutor(1) as pool,
        ):
            path = f"/media/{created['media_hash']}"
            proxy.set_latency(0.3)
            s3_server.start_recording()
            first = pool.submit(httpx.get, f"{a.url}{path}", timeout=30)
            client = redis_on.client()
            try:
                deadline = time.monotonic() + 10
                while not client.exists(lock_key(created["media_hash"])):
                    assert time.monotonic() < deadline, "replica A never took the lock"
                    time.sleep(0.005)
                assert client.delete(lock_key(created["media_hash"])) == 1  # lost
            finally:
                client.close()
            responses = asyncio.run(_burst([f"{(a, b)[i % 2].url}{path}" for i in range(50)]))
            responses.append(first.result())
            assert [r.status_code for r in responses] == [200] * 51
            assert all(r.content == body for r in responses)
            gets = s3_gets(s3_server)
    finally:
        proxy.stop()
    record_property(f"lost_lock_s3_gets_{redis_on.kind}", gets)
    print(f"\n[{redis_on.kind}] lock lost mid-read, 51 requests over 2 replicas: {gets} S3 GETs")
    assert gets == 2


def test_delete_through_one_replica_is_404_on_the_other_at_once(
    redis_on: Topology, transactional_db, record_property
) -> None:
    """100 deletes: each object in replica B's L1 (a HIT there), purged through replica
    A's engine (what DELETE /api/attachments/ calls); the time until B answers 404."""
    body = b"note" * 500
    seen: list[float] = []
    with (
        replica(redis_on, L1_TTL=3600) as a,
        replica(redis_on, L1_TTL=3600) as b,
        httpx.Client(timeout=10) as client,
    ):
        b.wait_subscribed()
        for i in range(100):
            media_hash = f"Delete{redis_on.kind[:4]}{i:012d}"
            assert b.engine.warm(media_object(media_hash, body), body)
            url = f"{b.url}/media/{media_hash}"
            assert client.get(url).headers["x-cache"] == "HIT"
            started = time.monotonic()
            assert a.engine.purge(media_hash)
            while (answer := client.get(url)).status_code != 404:
                assert answer.content == body
                assert time.monotonic() - started < 5, "a deleted object still served"
                time.sleep(0.001)
            seen.append(time.monotonic() - started)
    seen.sort()
    p50, p99 = statistics.median(seen) * 1000, seen[98] * 1000
    record_property(f"delete_visible_p99_ms_{redis_on.kind}", round(p99, 1))
    print(
        f"\n[{redis_on.kind}] delete visible on the other replica: p50 {p50:.1f} ms, "
        f"p99 {p99:.1f} ms, max {seen[-1] * 1000:.1f} ms (100 deletes)"
    )


# --- gaps: a lost or silent channel flushes L1 ----------------------------------------


def _node_at(topology: Topology, port: int):
    return next(n for n in topology.nodes if n.port == port)


def test_a_lost_or_silent_channel_flushes_l1(redis_on: Topology, record_property) -> None:
    """The listener's connection killed (reset at once), then its node frozen (SIGSTOP:
    no reset, no answer, as a partition): each is a gap, the L1 flush. How long after
    the fault, with the default heartbeat (0.5 s, late after 1.5 s)."""

    async def scenario() -> tuple[float, float]:
        tier = tier_on(redis_on)
        gaps: list[float] = []
        task = asyncio.ensure_future(
            tier.listen_for_invalidations(lambda _: None, lambda: gaps.append(time.monotonic()))
        )
        try:

            async def first_gap_after(count: int, limit: float) -> float:
                deadline = time.monotonic() + limit
                while len(gaps) <= count:
                    assert time.monotonic() < deadline, "no gap seen"
                    await asyncio.sleep(0.005)
                return gaps[count]

            await first_gap_after(0, 10)  # subscribed
            assert tier.listener is not None
            while tier.listener.node is None:
                await asyncio.sleep(0.01)
            node = _node_at(redis_on, tier.listener.node[1])
            before = len(gaps)
            client = node.client()
            killed_at = time.monotonic()
            client.client_kill_filter(_type="pubsub")
            client.close()
            reset = await first_gap_after(before, 10) - killed_at
            while tier.listener.node is None:  # subscribed again
                await asyncio.sleep(0.01)
            await asyncio.sleep(1.0)  # heartbeats going
            node = _node_at(redis_on, tier.listener.node[1])
            before = len(gaps)
            assert node.process is not None
            os.kill(node.process.pid, signal.SIGSTOP)
            frozen_at = time.monotonic()
            try:
                silent = await first_gap_after(before, 10) - frozen_at
            finally:
                os.kill(node.process.pid, signal.SIGCONT)
            return reset, silent
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await tier.close()

    reset, silent = asyncio.run(scenario())
    if isinstance(redis_on, Cluster):  # a frozen master may have failed the cluster
        redis_on.wait_ok()
    record_property(f"gap_after_reset_ms_{redis_on.kind}", round(reset * 1000, 1))
    record_property(f"gap_after_silence_ms_{redis_on.kind}", round(silent * 1000, 1))
    print(f"\n[{redis_on.kind}] L1 flushed {reset * 1000:.0f} ms after the channel was reset, "
          f"{silent * 1000:.0f} ms after its node froze (heartbeat 0.5 s)")  # fmt: skip


def test_a_slow_redis_does_not_slow_what_l1_holds(redis_on: Topology, record_property) -> None:
    """Every master answers up to 500 ms late (DEBUG SLEEP 0.5 back to back): hits L1
    holds stay HITs, as fast as before,
    and the invalidation channel (late, not lost) does not flush L1."""
    body = b"hot!" * 2000
    hashes = [f"SlowRedis{redis_on.kind[:4]}{i:09d}" for i in range(20)]
    with replica(redis_on) as one, httpx.Client(timeout=10) as client:
        one.wait_subscribed()
        for media_hash in hashes:
            assert one.engine.warm(media_object(media_hash, body), body)

        def hits() -> list[float]:
            took = []
            for media_hash in hashes * 3:
                started = time.monotonic()
                answer = client.get(f"{one.url}/media/{media_hash}")
                took.append(time.monotonic() - started)
                assert answer.headers["x-cache"] == "HIT"
                assert answer.content == body
            return took

        before = hits()
        listener = one.listener()
        assert listener is not None
        gaps = listener.gaps
        with slowed(redis_on.masters(), 0.5):
            time.sleep(1.0)  # heartbeats now come back late
            probe = redis_on.masters()[0].client()
            waited = 0.0
            for _ in range(4):  # spaced, as the heartbeats are: each lands in a sleep
                time.sleep(0.05)
                started = time.monotonic()
                probe.ping()
                waited += time.monotonic() - started
            assert waited > 0.4  # Redis is slow indeed (about 250 ms a call)
            probe.close()
            STATS.take()
            during = hits()
            served = STATS.take()
            time.sleep(0.5)
        assert listener.gaps == gaps  # late is not lost: L1 kept
        # Every hit answered by L1, none by (or after asking) the slow Redis.
        assert served.requests[HIT_L1] == len(during)
        assert served.requests[HIT_REDIS] == 0
    ratio = statistics.median(during) / statistics.median(before)
    record_property(f"l1_hit_slow_redis_ratio_{redis_on.kind}", round(ratio, 2))
    slow, fast = statistics.median(during) * 1000, statistics.median(before) * 1000
    print(
        f"\n[{redis_on.kind}] L1 hits with Redis +500 ms: median {slow:.2f} ms vs "
        f"{fast:.2f} ms before, max {max(during) * 1000:.1f} ms"
    )
    # None waited for Redis (a call takes about 250 ms now); the median, not the maximum:
    # a loaded machine can stall any one request for as long (0.57 s seen once).
    assert statistics.median(during) < 0.1


def test_redis_500_ms_away_through_a_proxy_does_not_slow_l1_hits(record_property) -> None:
    """The same through the suite's TCP proxy (``tests/faults.FaultProxy``): every chunk
    to and from a standalone Redis waits 500 ms. L1 hits stay HITs and the channel,
    late but working, is not taken for lost."""
    body = b"far!" * 2000
    hashes = [f"FarRedis{i:014d}" for i in range(10)]
    with running("standalone") as private:
        proxy = FaultProxy(private.node.port).start()
        try:
            far = {"REDIS_URL": f"redis://127.0.0.1:{proxy.port}/0"}
            with replica(private, **far) as one, httpx.Client(timeout=10) as client:
                one.wait_subscribed()
                for media_hash in hashes:
                    assert one.engine.warm(media_object(media_hash, body), body)
                listener = one.listener()
                assert listener is not None
                gaps = listener.gaps
                proxy.set_latency(0.5)
                time.sleep(2.0)  # several heartbeats, each about 1 s late
                took = []
                for media_hash in hashes * 5:
                    started = time.monotonic()
                    answer = client.get(f"{one.url}/media/{media_hash}")
                    took.append(time.monotonic() - started)
                    assert answer.headers["x-cache"] == "HIT"
                    assert answer.content == body
                assert listener.gaps == gaps
        finally:
            proxy.stop()
    record_property("l1_hit_ms_redis_500ms_away", round(statistics.median(took) * 1000, 2))
    print(f"\n[standalone via proxy] L1 hits with Redis 500 ms away: median "
          f"{statistics.median(took) * 1000:.2f} ms, max {max(took) * 1000:.1f} ms")  # fmt: skip
    assert max(took) < 0.5
