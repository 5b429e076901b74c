"""Every few seconds: this process's counters to Prometheus and to the shared buckets."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from mediacache.core.counters import STATS, Snapshot
from mediacache.observability import metrics

if TYPE_CHECKING:
    from mediacache.engine import Engine

logger = logging.getLogger("mediacache.stats")


def publish(engine: Engine, snapshot: Snapshot) -> None:
    """Counts to Prometheus, gauges sampled, counts added to the shared buckets (blocking)."""
    metrics.publish(snapshot)
    metrics.L1_BYTES.set(engine.l1.used_bytes)
    metrics.L1_OBJECTS.set(len(engine.l1))
    used_memory = engine.redis_used_memory()
    if used_memory is not None:
        metrics.REDIS_MEMORY.set(used_memory)
    try:
        engine.series.add(snapshot, time.time(), used_memory)
    except Exception as exc:  # Redis down: these counts miss the charts, serving goes on
        logger.warning("[MEDIA CACHE] could not record stats: %r", exc)


def flush_now(engine: Engine) -> None:
    """Publish what this process counted so far. Call it where no request is being
    counted at the same moment (tests, shutdown); the server uses :func:`flush_forever`."""
    publish(engine, STATS.take())


async def flush_forever(engine: Engine, interval: float) -> None:
    loop = asyncio.get_running_loop()
    try:
        while True:
            await asyncio.sleep(interval)
            # take() here, on the loop thread that also runs record(): no count is lost.
            await loop.run_in_executor(engine.executor, publish, engine, STATS.take())
    finally:
        await loop.run_in_executor(engine.executor, publish, engine, STATS.take())
