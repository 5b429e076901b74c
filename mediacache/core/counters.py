"""This process's counters: plain integers on the hot path, published in batches.

Incrementing a prometheus-client metric takes a lock (and an mmap write in
multiprocess mode); the serving path instead bumps list slots owned by the event
loop thread, and a flusher (:mod:`mediacache.observability.flusher`) turns the deltas into
Prometheus metrics and per-minute buckets in Redis every few seconds.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from dataclasses import dataclass, field

OUTCOMES = ("hit_l1", "hit_redis", "miss", "not_found", "expired", "error")
HIT_L1, HIT_REDIS, MISS, NOT_FOUND, EXPIRED, ERROR = range(len(OUTCOMES))
# Upper bounds (seconds) of the latency histogram; the last slot is +Inf.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
STORE_OPERATIONS = ("get", "get_range", "delete")


@dataclass
class Snapshot:
    """Counts since the previous snapshot."""

    requests: list[int] = field(default_factory=lambda: [0] * len(OUTCOMES))
    latency: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS) + 1))
    latency_sum: float = 0.0
    bytes_served: int = 0
    store_requests: dict[str, int] = field(default_factory=dict)
    store_errors: dict[str, int] = field(default_factory=dict)
    coalesced: int = 0
    redis_errors: int = 0
    # Events counted by optional parts (the WhatsApp wing's "evo:sent"), by name: they
    # go to the per-minute series under that name; their Prometheus metrics are their own.
    events: dict[str, int] = field(default_factory=dict)

    def is_empty(self) -> bool:
        return not (
            any(self.requests)
            or self.store_requests
            or self.store_errors
            or self.coalesced
            or self.redis_errors
            or self.events
        )


class ProcessStats:
    """Counters of one process. ``record`` runs on the event loop; the rest may
    come from worker threads and take a lock."""

    def __init__(self) -> None:
        self._current = Snapshot()
        self._lock = threading.Lock()

    def record(self, outcome: int, seconds: float, nbytes: int) -> None:
        """One /media answer. Hot: no lock, no allocation."""
        current = self._current
        current.requests[outcome] += 1
        current.latency[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        current.latency_sum += seconds
        current.bytes_served += nbytes

    def store_request(self, operation: str, *, failed: bool = False) -> None:
        with self._lock:
            counts = self._current.store_errors if failed else self._current.store_requests
            counts[operation] = counts.get(operation, 0) + 1

    def coalesced_wait(self) -> None:
        self._current.coalesced += 1

    def redis_error(self) -> None:
        with self._lock:
            self._current.redis_errors += 1

    def count_event(self, name: str) -> None:
        with self._lock:
            self._current.events[name] = self._current.events.get(name, 0) + 1

    def take(self) -> Snapshot:
        """Hand over the counts so far and start from zero."""
        with self._lock:
            taken, self._current = self._current, Snapshot()
        return taken


STATS = ProcessStats()
