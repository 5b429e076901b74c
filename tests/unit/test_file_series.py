"""The per-minute series without Redis: a SQLite file that every process on the machine
adds to and reads (the server's flusher, its workers, ``manage.py media_cache_stats``)."""

from __future__ import annotations

import multiprocessing
import sqlite3

import pytest

from mediacache.core.counters import OUTCOMES, Snapshot
from mediacache.observability.timeseries import (
    KEEP_SECONDS,
    FileSeries,
    StatsFileError,
    default_stats_file,
)

NOW = 1_800_000_000.0  # a minute boundary plus nothing: 30_000_000 * 60


def served(hits: int = 0, misses: int = 0, latency_sum: float = 0.0) -> Snapshot:
    requests = [0] * len(OUTCOMES)
    requests[OUTCOMES.index("hit_l1")] = hits
    requests[OUTCOMES.index("miss")] = misses
    return Snapshot(requests=requests, latency_sum=latency_sum, store_requests={"get": misses})


def test_adds_sum_per_minute_and_a_new_reader_sees_them(tmp_path):
    path = tmp_path / "stats.sqlite3"
    FileSeries(path).add(served(hits=3, misses=1, latency_sum=0.25), NOW, None)
    FileSeries(path).add(served(hits=2, latency_sum=0.125), NOW + 30, None)
    FileSeries(path).add(served(misses=4), NOW + 60, None)

    window = FileSeries(path).window(3, now=NOW + 60)
    assert window.minutes == [NOW - 60, NOW, NOW + 60]
    assert window.series[0] == {}
    assert window.requests("hit_l1") == 5
    assert window.requests("miss") == 5
    assert window.total("s3:get") == 5
    assert window.total("lat_sum") == 0.375
    assert [point["requests"] for point in window.per_minute()] == [0, 6, 4]


def add_from_another_process(path: str, hits: int) -> None:
    series = FileSeries(path)
    for _ in range(hits):
        series.add(served(hits=1), NOW, None)


def test_processes_adding_at_once_lose_no_count(tmp_path):
    path = str(tmp_path / "stats.sqlite3")
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=add_from_another_process, args=(path, 50)) for _ in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    assert FileSeries(path).window(1, now=NOW).requests("hit_l1") == 150


def test_an_idle_interval_does_not_create_the_file_and_reading_needs_none(tmp_path):
    path = tmp_path / "sub" / "stats.sqlite3"
    FileSeries(path).add(Snapshot(), NOW, None)
    assert not path.exists()
    window = FileSeries(path).window(60, now=NOW)
    assert window.hit_rate is None
    assert not path.exists()


def test_two_days_are_kept(tmp_path):
    path = tmp_path / "stats.sqlite3"
    series = FileSeries(path)
    series.add(served(hits=1), NOW, None)
    series.add(served(hits=1), NOW + KEEP_SECONDS - 60, None)
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT count(DISTINCT minute) FROM buckets").fetchone() == (2,)
    series.add(served(hits=1), NOW + KEEP_SECONDS, None)
    with sqlite3.connect(path) as db:
        minutes = [row[0] for row in db.execute("SELECT DISTINCT minute FROM buckets")]
    assert NOW not in minutes
    assert len(minutes) == 2


def test_an_unusable_file_is_a_clear_error(tmp_path):
    path = tmp_path / "stats.sqlite3"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StatsFileError, match=str(path)):
        FileSeries(path).add(served(hits=1), NOW, None)
    with pytest.raises(StatsFileError, match="stats file"):
        FileSeries(path).window(5, now=NOW)


def test_the_file_belongs_to_one_database():
    sqlite = {"ENGINE": "django.db.backends.sqlite3", "NAME": "/srv/a/var/db.sqlite3"}
    same = dict(sqlite, HOST="", PORT="")
    other = dict(sqlite, NAME="/srv/b/var/db.sqlite3")
    postgres = {"ENGINE": "django.db.backends.postgresql", "NAME": "app", "HOST": "db"}
    assert default_stats_file(sqlite) == default_stats_file(same)
    assert default_stats_file(sqlite) != default_stats_file(other)
    assert default_stats_file(sqlite) != default_stats_file(postgres)
    assert default_stats_file(postgres).name.startswith("mediacache-stats-")
