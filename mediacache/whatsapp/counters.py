"""Sends through Evolution, counted: a Prometheus counter and the per-minute series
(``evo:sent``/``evo:failed``, shown by ``media_cache_stats``). Sends are rare and slow,
so the counter is bumped directly, not batched like the serving path's counts."""

from __future__ import annotations

from typing import Literal

from prometheus_client import Counter

from mediacache.core.counters import STATS

EVOLUTION_SENDS = Counter(
    "mediacache_evolution_sends", "Sends through Evolution API by result.", ["result"]
)


def count_send(result: Literal["sent", "failed"]) -> None:
    EVOLUTION_SENDS.labels(result).inc()
    STATS.count_event(f"evo:{result}")
