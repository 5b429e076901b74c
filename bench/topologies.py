"""L1 coherence on each Redis topology: how fast a delete reaches another process's
L1, and how fast a broken invalidation channel is noticed (the L1 flush).

    .venv/bin/python -m bench.topologies [--deletes 200] [--gaps 5]

Starts its own standalone Redis, Sentinel trio (master + replica), 3-master Cluster
and Cluster of 3 masters + 3 replicas on free loopback ports
(``tests/redis_topologies.py``), one after the other, and stops them. Per topology,
two "replicas" in this process, each with its own client, as two processes would
have: replica B holds objects in its L1 and follows the invalidation channel
(``RedisTier.listen_for_invalidations``, as a serving process does); replica A
purges (``RedisWriter.delete``, what a DELETE calls).

- delete visible: from A's purge call until B's L1 no longer holds the object.
- gap, reset: B's subscription connection killed (``CLIENT KILL TYPE pubsub``)
  until B flushes its L1.
- gap, silent: the node B is subscribed to frozen (SIGSTOP, no reset) until B
  flushes its L1: the heartbeat (``MEDIA_INVALIDATION_HEARTBEAT``, 0.5 s; late
  after three) is what notices.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import django  # noqa: E402
from django.conf import settings  # noqa: E402

if not settings.configured:
    settings.configure(USE_TZ=True)
    django.setup()

from mediacache.core.headers import build_cached  # noqa: E402
from mediacache.core.objects import MediaObject  # noqa: E402
from mediacache.core.settings import MediaSettings  # noqa: E402
from mediacache.tiers.invalidation import InvalidationListener  # noqa: E402
from mediacache.tiers.lru import BytesLRU  # noqa: E402
from mediacache.tiers.redis import RedisTier, RedisWriter  # noqa: E402
from mediacache.tiers.topology import RedisTopology  # noqa: E402
from tests.redis_topologies import Cluster, Node, Topology, running  # noqa: E402

BODY = b"voice-note" * 1000


def _object(media_hash: str) -> MediaObject:
    return MediaObject(
        media_hash, f"chat/{media_hash}", "audio/ogg", len(BODY), "", time.time() + 3600, "v.ogg"
    )


async def _until(done: Callable[[], bool], step: float) -> None:
    """Poll: the moment is what is measured, an Event would need hooks in the tiers."""
    while not done():  # noqa: ASYNC110
        await asyncio.sleep(step)


def _subscribed_node(topology: Topology, listener: InvalidationListener) -> Node:
    assert listener.node is not None
    return next(n for n in topology.nodes if n.port == listener.node[1])


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _measure(topology: Topology, deletes: int, gaps: int) -> dict[str, float]:
    found = RedisTopology.from_settings(MediaSettings(**topology.settings()))
    assert found is not None
    l1 = BytesLRU(64 * 1024 * 1024, 3600.0, max_item_bytes=8 * 1024 * 1024)
    flushed: list[float] = []

    def on_gap() -> None:
        flushed.append(time.monotonic())
        l1.clear()

    tier = RedisTier(found, timeout=0.1, retry_after=1.0)
    writer = RedisWriter(found, timeout=0.1, tombstone_ttl=60)
    listener = asyncio.ensure_future(tier.listen_for_invalidations(l1.invalidate, on_gap))
    loop = asyncio.get_running_loop()
    try:
        await _until(lambda: bool(flushed) and tier.listener is not None, 0.01)
        listening = tier.listener
        assert listening is not None
        await _until(lambda: listening.node is not None, 0.01)
        seen = []
        for i in range(deletes):
            media_hash = f"Bench{topology.kind[:4]}{i:013d}"
            l1.put(media_hash, build_cached(_object(media_hash), BODY), 3600)
            started = time.monotonic()
            purge = loop.run_in_executor(None, writer.delete, media_hash)
            await _until(lambda h=media_hash: l1.get(h) is None, 0.0002)
            seen.append(time.monotonic() - started)
            assert await purge
        resets, silences = [], []
        for _ in range(gaps):
            await _until(lambda: listening.node is not None, 0.01)
            await asyncio.sleep(1.0)  # heartbeats going
            node = _subscribed_node(topology, listening)
            before = len(flushed)
            client = node.client()
            started = time.monotonic()
            client.client_kill_filter(_type="pubsub")
            client.close()
            await _until(lambda b=before: len(flushed) > b, 0.001)
            resets.append(flushed[before] - started)
        for _ in range(gaps):
            await _until(lambda: listening.node is not None, 0.01)
            await asyncio.sleep(1.0)
            node = _subscribed_node(topology, listening)
            before = len(flushed)
            assert node.process is not None
            os.kill(node.process.pid, signal.SIGSTOP)
            started = time.monotonic()
            try:
                await _until(lambda b=before: len(flushed) > b, 0.001)
            finally:
                os.kill(node.process.pid, signal.SIGCONT)
            silences.append(flushed[before] - started)
            if isinstance(topology, Cluster):
                await loop.run_in_executor(None, topology.wait_ok)
    finally:
        listener.cancel()
        await asyncio.gather(listener, return_exceptions=True)
        await tier.close()
        writer.client.close()
    ms = [s * 1000 for s in seen]
    return {
        "p50": statistics.median(ms),
        "p99": _quantile(ms, 0.99),
        "max": max(ms),
        "reset": statistics.median(resets) * 1000,
        "silent": statistics.median(silences) * 1000,
        "silent_max": max(silences) * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deletes", type=int, default=200)
    parser.add_argument("--gaps", type=int, default=5)
    parser.add_argument(
        "--only",
        choices=["standalone", "sentinel", "cluster", "cluster-replicas"],
        action="append",
    )
    args = parser.parse_args()
    results = {}
    for kind in args.only or ["standalone", "sentinel", "cluster", "cluster-replicas"]:
        started = time.monotonic()
        with running(kind) as topology:
            up = time.monotonic() - started
            results[kind] = asyncio.run(_measure(topology, args.deletes, args.gaps))
            results[kind]["start_s"] = up
    base = results.get("standalone", next(iter(results.values())))
    print(
        f"\nL1 coherence per Redis topology ({args.deletes} deletes, {args.gaps} gaps of each kind)"
    )
    print(
        f"{'topology':<16} {'start s':>7} {'delete p50 ms':>13} {'p99 ms':>7} {'max ms':>7} "
        f"{'p99 vs standalone':>17} {'gap reset ms':>12} {'gap silent ms':>13} {'max':>6}"
    )
    for kind, r in results.items():
        print(
            f"{kind:<16} {r['start_s']:7.1f} {r['p50']:13.2f} {r['p99']:7.2f} {r['max']:7.1f} "
            f"{r['p99'] / base['p99']:16.2f}x {r['reset']:12.1f} {r['silent']:13.0f} "
            f"{r['silent_max']:6.0f}"
        )


if __name__ == "__main__":
    main()
