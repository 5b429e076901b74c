"""Redis over TLS beyond a standalone URL: a 3-master Cluster, and a Sentinel trio over
a master and its replica, whose nodes (sentinels included) listen on TLS only and ask
every client for its certificate (``tls-auth-clients yes``; the cluster bus and the
replication on TLS too), with a throwaway CA (``tests/tls_certs.py``). The engine
reaches them with ``REDIS_TLS`` and the CA, certificate and key files: the serving
tier, the write side and the invalidation listener each connect, and a client without
TLS is turned away."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
import redis

from mediacache.core.headers import build_cached
from mediacache.core.settings import MediaSettings
from mediacache.tiers import codec
from mediacache.tiers.redis import RedisTier, RedisWriter
from mediacache.tiers.topology import RedisTopology
from tests.redis_topologies import running
from tests.test_topologies import media_object
from tests.tls_certs import make_tls_files


@pytest.mark.parametrize("kind", ["cluster", "sentinel"])
def test_the_tiers_on_a_tls_only_topology(kind: str, tmp_path: Path) -> None:
    files = make_tls_files(tmp_path / "tls")
    body = b"secure" * 1000
    media_hash = "TlsTopology0000000001"
    with running(kind, tls=files) as redis_side:
        settings = MediaSettings(**{"REDIS_URL": "", **redis_side.settings()})  # type: ignore[arg-type]
        topology = RedisTopology.from_settings(settings)
        assert topology is not None
        assert topology.tls
        for node in redis_side.nodes:  # data nodes and sentinels: no TLS, no answer
            with pytest.raises(redis.ConnectionError):
                redis.Redis(host="127.0.0.1", port=node.port, socket_timeout=0.5).ping()

        async def scenario() -> list[str]:
            heard: list[str] = []
            tier = RedisTier(topology, timeout=1.0, retry_after=1.0, heartbeat=0.2)
            writer = RedisWriter(topology, timeout=1.0, tombstone_ttl=60)
            listening = asyncio.ensure_future(
                tier.listen_for_invalidations(heard.append, lambda: None)
            )
            try:
                deadline = time.monotonic() + 10
                while tier.listener is None or tier.listener.node is None:
                    assert time.monotonic() < deadline, "the listener never subscribed"
                    await asyncio.sleep(0.01)
                await tier.put(build_cached(media_object(media_hash, body), body), 60)
                cached = await tier.get(media_hash)
                assert cached is not None
                assert not isinstance(cached, bytes)
                assert cached.body == body
                assert writer.delete(media_hash)
                assert await tier.get(media_hash) == codec.TOMBSTONE
                while media_hash not in heard:
                    assert time.monotonic() < deadline, "the purge was not heard"
                    await asyncio.sleep(0.01)
                await asyncio.sleep(1.0)  # heartbeats go round over TLS: no gap
                assert tier.listener.gaps == 1  # the first subscription only
                assert tier.breaker.failures == 0
                return heard
            finally:
                listening.cancel()
                await asyncio.gather(listening, return_exceptions=True)
                writer.client.close()
                await tier.close()

        assert asyncio.run(scenario()) == [media_hash]
