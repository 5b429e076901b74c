"""How often the invalidation listener flushes L1 while its Redis is away.

A flush costs one store read per hot object and process, so the listener flushes when
a gap starts, every ``gap_flush_every`` seconds while it lasts, and when it ends --
not at each failed reconnection attempt. A real ``redis-server`` of the test's own is
SIGKILLed and started again on its port (``tests/redis_topologies.py``).
"""

from __future__ import annotations

import asyncio
import time

from mediacache.tiers.invalidation import InvalidationListener
from mediacache.tiers.redis import RedisWriter
from mediacache.tiers.topology import RedisTopology
from tests.redis_topologies import Standalone, running


async def _until(check, limit: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + limit
    while not check():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.01)


def _outage(down_for: float, gap_flush_every: float) -> tuple[InvalidationListener, list[str]]:
    """Subscribed; Redis killed; ``down_for`` seconds later started again (empty, same
    port); until subscribed again. What happened: ``flush`` or ``purge:HASH`` events."""
    events: list[str] = []
    with running("standalone") as redis_side:
        assert isinstance(redis_side, Standalone)
        topology = RedisTopology("standalone", url=redis_side.url)
        listener = InvalidationListener(
            topology,
            on_invalidate=lambda media_hash: events.append(f"purge:{media_hash}"),
            on_gap=lambda: events.append("flush"),
            heartbeat=0.2,
            timeout=1.0,
            gap_flush_every=gap_flush_every,
        )

        async def scenario() -> None:
            task = asyncio.ensure_future(listener.run())
            try:
                await _until(lambda: listener.node is not None, 10, "never subscribed")
                events.clear()
                redis_side.node.kill()
                await _until(lambda: listener.node is None, 10, "the loss went unseen")
                await asyncio.sleep(down_for)
                await asyncio.get_running_loop().run_in_executor(None, redis_side.node.start)
                await _until(lambda: listener.node is not None, 10, "never subscribed again")
                writer = RedisWriter(topology, timeout=1.0, tombstone_ttl=60)
                try:
                    assert writer.delete("AfterTheGap0000000001")
                finally:
                    writer.client.close()
                await _until(lambda: events[-1].startswith("purge:"), 5, "purge not heard")
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

        asyncio.run(scenario())
    return listener, events


def test_an_outage_flushes_l1_when_it_starts_and_when_it_ends_not_per_attempt() -> None:
    """3 s down: several reconnection attempts (backing off to 1 s), two
    flushes (the loss, the new subscription), and purges heard again after it."""
    listener, events = _outage(3.0, gap_flush_every=60.0)
    assert events == ["flush", "flush", "purge:AfterTheGap0000000001"]
    assert listener.attempts >= 1 + 3  # it kept trying (0.1, 0.2, 0.4 s, ... up to 1 s)


def test_a_long_outage_flushes_l1_every_gap_flush_every_seconds() -> None:
    """While the channel stays down, a purge Redis could not announce must not live in L1
    for the whole outage: a flush every ``gap_flush_every`` seconds (0.5 here, over 3 s)."""
    _, events = _outage(3.0, gap_flush_every=0.5)
    assert events[-1] == "purge:AfterTheGap0000000001"
    # The loss, periodic ones (about six; two at least, whatever the machine's stalls),
    # the new subscription.
    assert events.count("flush") >= 1 + 2 + 1
