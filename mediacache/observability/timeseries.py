"""Per-minute totals shared by every process, for the stats command and /ops/ charts.

Each process adds its deltas to a Redis hash per minute (``HINCRBY``), so the
buckets hold the sum over all workers and replicas; Redis's own memory is
sampled into the same buckets. Kept two days.

Without Redis the buckets live in a SQLite file (:class:`FileSeries`), not in the
server's memory: ``manage.py media_cache_stats`` runs in a process of its own and
must read what the server counted, as ``/ops/`` does. Each process's flusher adds
its deltas every ``STATS_INTERVAL`` seconds with an upsert (SQLite's own locking
makes concurrent adds sum, like ``HINCRBY``), and every reader opens the file.
Why a file rather than asking the running server over HTTP: it needs no endpoint,
no credentials and no running server (the last two days survive a restart), and
several workers on one machine add into it too. The file is
``<temp dir>/mediacache-stats-<uid>-<digest of the default database>.sqlite3``:
the processes that share a database on one machine (the server, its workers,
``manage.py`` commands) share its counters, and two projects or test runs on one
machine do not mix theirs. Across machines, use Redis.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mediacache.core.counters import LATENCY_BUCKETS, OUTCOMES, Snapshot

if TYPE_CHECKING:
    from redis import Redis
    from redis.cluster import RedisCluster

KEY_PREFIX = "mediacache:stats:"
KEEP_SECONDS = 2 * 24 * 3600
_HITS = ("hit_l1", "hit_redis")
_SERVED = ("hit_l1", "hit_redis", "miss")


def minute_of(timestamp: float) -> int:
    return int(timestamp // 60) * 60


def snapshot_fields(snapshot: Snapshot) -> dict[str, float]:
    """A snapshot as hash fields (only the non-zero ones)."""
    fields: dict[str, float] = {}
    for name, count in zip(OUTCOMES, snapshot.requests, strict=True):
        if count:
            fields[f"req:{name}"] = count
    for index, count in enumerate(snapshot.latency):
        if count:
            fields[f"lat:{index}"] = count
    if snapshot.latency_sum:
        fields["lat_sum"] = snapshot.latency_sum
    if snapshot.bytes_served:
        fields["bytes"] = snapshot.bytes_served
    for op, count in snapshot.store_requests.items():
        fields[f"s3:{op}"] = count
    for op, count in snapshot.store_errors.items():
        fields[f"s3err:{op}"] = count
    if snapshot.coalesced:
        fields["coalesced"] = snapshot.coalesced
    if snapshot.redis_errors:
        fields["redis_err"] = snapshot.redis_errors
    fields.update(snapshot.events)
    return fields


@dataclass
class Window:
    """Totals over some minutes, with the per-minute series for charts."""

    minutes: list[int]
    series: list[dict[str, float]]

    def total(self, field: str) -> float:
        return sum(bucket.get(field, 0) for bucket in self.series)

    def requests(self, outcome: str) -> int:
        return int(self.total(f"req:{outcome}"))

    @property
    def hits(self) -> int:
        return sum(self.requests(o) for o in _HITS)

    @property
    def served(self) -> int:
        return sum(self.requests(o) for o in _SERVED)

    @property
    def hit_rate(self) -> float | None:
        return self.hits / self.served if self.served else None

    def latency_quantile(self, q: float) -> float | None:
        return quantile([self.total(f"lat:{i}") for i in range(len(LATENCY_BUCKETS) + 1)], q)

    def per_minute(self) -> list[dict[str, float | int | None]]:
        """Chart points: hit rate, p50/p95 latency (ms), requests, Redis memory."""
        points = []
        for minute, bucket in zip(self.minutes, self.series, strict=True):
            one = Window([minute], [bucket])
            p50, p95 = one.latency_quantile(0.5), one.latency_quantile(0.95)
            points.append(
                {
                    "t": minute,
                    "requests": one.served + one.requests("not_found") + one.requests("expired"),
                    "hit_rate": one.hit_rate,
                    "p50_ms": None if p50 is None else p50 * 1000,
                    "p95_ms": None if p95 is None else p95 * 1000,
                    "redis_used_memory": bucket.get("redis_mem"),
                    "s3_gets": int(one.total("s3:get") + one.total("s3:get_range")),
                }
            )
        return points


def quantile(counts: list[float], q: float) -> float | None:
    """The bucket upper bound below which ``q`` of the observations fall."""
    total = sum(counts)
    if not total:
        return None
    rank = q * total
    seen = 0.0
    for index, count in enumerate(counts):
        seen += count
        if seen >= rank:
            return LATENCY_BUCKETS[index] if index < len(LATENCY_BUCKETS) else float("inf")
    return float("inf")


def _decode(raw: Mapping[bytes | str, bytes | str]) -> dict[str, float]:
    return {(k.decode() if isinstance(k, bytes) else k): float(v) for k, v in raw.items()}


class RedisSeries:
    """The shared buckets, through a blocking redis-py client."""

    def __init__(self, client: Redis | RedisCluster) -> None:
        self.client = client

    def add(self, snapshot: Snapshot, now: float, redis_used_memory: int | None) -> None:
        key = f"{KEY_PREFIX}{minute_of(now)}"
        pipe = self.client.pipeline(transaction=False)
        for name, value in snapshot_fields(snapshot).items():
            if isinstance(value, float) and not value.is_integer():
                pipe.hincrbyfloat(key, name, value)
            else:
                pipe.hincrby(key, name, int(value))
        if redis_used_memory is not None:
            pipe.hset(key, "redis_mem", redis_used_memory)
        pipe.expire(key, KEEP_SECONDS)
        pipe.execute()

    def window(self, minutes: int, now: float | None = None) -> Window:
        last = minute_of(time.time() if now is None else now)
        stamps = [last - 60 * i for i in range(minutes - 1, -1, -1)]
        pipe = self.client.pipeline(transaction=False)
        for stamp in stamps:
            pipe.hgetall(f"{KEY_PREFIX}{stamp}")
        return Window(stamps, [_decode(raw) for raw in pipe.execute()])


class StatsFileError(OSError):
    """The stats file cannot be read or written (its path and SQLite's reason)."""


_SCHEMA = """
CREATE TABLE IF NOT EXISTS buckets (
    minute INTEGER NOT NULL,
    field TEXT NOT NULL,
    value REAL NOT NULL,
    PRIMARY KEY (minute, field)
) WITHOUT ROWID
"""
_ADD = (
    "INSERT INTO buckets (minute, field, value) VALUES (?, ?, ?) "
    "ON CONFLICT (minute, field) DO UPDATE SET value = value + excluded.value"
)
_SET = (
    "INSERT INTO buckets (minute, field, value) VALUES (?, ?, ?) "
    "ON CONFLICT (minute, field) DO UPDATE SET value = excluded.value"
)


class FileSeries:
    """The buckets in a SQLite file, shared by every process on this machine (no Redis).

    A connection per call: the flusher writes from the engine's thread pool, /ops/
    reads from request threads, and sqlite3 connections stay in their own thread.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def add(self, snapshot: Snapshot, now: float, redis_used_memory: int | None) -> None:
        minute = minute_of(now)
        counts = [(minute, name, float(value)) for name, value in snapshot_fields(snapshot).items()]
        if not counts and redis_used_memory is None:
            return  # an idle interval: the file is not touched
        with self._connection() as db, db:  # one transaction
            db.executemany(_ADD, counts)
            if redis_used_memory is not None:
                db.execute(_SET, (minute, "redis_mem", float(redis_used_memory)))
            db.execute("DELETE FROM buckets WHERE minute <= ?", (minute - KEEP_SECONDS,))

    def window(self, minutes: int, now: float | None = None) -> Window:
        last = minute_of(time.time() if now is None else now)
        stamps = [last - 60 * i for i in range(minutes - 1, -1, -1)]
        buckets: dict[int, dict[str, float]] = {stamp: {} for stamp in stamps}
        if self.path.exists():  # else nothing was counted yet
            with self._connection() as db:
                rows = db.execute(
                    "SELECT minute, field, value FROM buckets WHERE minute BETWEEN ? AND ?",
                    (stamps[0], last),
                )
                for minute, name, value in rows:
                    if minute in buckets:
                        buckets[minute][name] = value
        return Window(stamps, [buckets[stamp] for stamp in stamps])

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with closing(sqlite3.connect(self.path, timeout=5.0)) as db:
                # WAL: readers never wait for the flusher; losing the last few seconds
                # of counts in a power cut is fine, so no fsync per write.
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")
                db.execute(_SCHEMA)
                yield db
        except (sqlite3.Error, OSError) as exc:
            raise StatsFileError(f"stats file {self.path}: {exc}") from exc


def default_stats_file(database: Mapping[str, Any]) -> Path:
    """The stats file of the processes that use ``database`` (a ``DATABASES`` entry)
    as this user, in the system's temporary directory."""
    identity = repr([str(database.get(k) or "") for k in ("ENGINE", "NAME", "HOST", "PORT")])
    digest = hashlib.sha256(identity.encode()).hexdigest()[:16]
    user = os.getuid() if hasattr(os, "getuid") else 0
    return Path(tempfile.gettempdir()) / f"mediacache-stats-{user}-{digest}.sqlite3"
