"""The latency histogram on /metrics, built from pre-bucketed snapshots with public
prometheus-client APIs, in one process and summed over worker processes.

prometheus-client picks its value store from ``PROMETHEUS_MULTIPROC_DIR`` when it is
imported, so each worker here is its own Python process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[2]
NAME = "mediacache_media_request_duration_seconds"
# The series the old prometheus_client.Histogram exposed, by upper bound.
LE = (
    "0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05",
    "0.1", "0.25", "0.5", "1.0", "2.5", "5.0", "+Inf",
)  # fmt: skip

# A worker: publishes the snapshots given as JSON, then prints /metrics if asked.
WORKER = """
import json, sys
from mediacache.core.counters import Snapshot
from mediacache.observability import metrics

for latency, total, hits in json.loads(sys.argv[1]):
    snapshot = Snapshot(latency=latency, latency_sum=total)
    snapshot.requests[0] = hits
    metrics.publish(snapshot)
if sys.argv[2] == "scrape":
    sys.stdout.write(metrics.exposition()[0].decode())
"""


def slots(**counts: int) -> list[int]:
    """A snapshot's latency list: ``b0=3`` puts 3 observations in the first bucket."""
    latency = [0] * len(LE)
    for slot, count in counts.items():
        latency[int(slot[1:])] = count
    return latency


def worker(snapshots: list[tuple[list[int], float, int]], multiproc_dir: Path | None) -> str:
    env = {k: v for k, v in os.environ.items() if k.lower() != "prometheus_multiproc_dir"}
    if multiproc_dir is not None:
        env["PROMETHEUS_MULTIPROC_DIR"] = str(multiproc_dir)
    scrape = "scrape" if multiproc_dir is None or not snapshots else "no"
    done = subprocess.run(
        [sys.executable, "-c", WORKER, json.dumps(snapshots), scrape],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def histogram(text: str) -> dict[str, float]:
    """``{le: cumulative count, "sum": ..., "count": ...}`` of the latency histogram."""
    families = {family.name: family for family in text_string_to_metric_families(text)}
    family = families[NAME]
    assert family.type == "histogram"
    out: dict[str, float] = {}
    for sample in family.samples:
        if sample.name == NAME + "_bucket":
            out[sample.labels["le"]] = sample.value
        elif sample.name in (NAME + "_sum", NAME + "_count"):
            out[sample.name.rsplit("_", 1)[1]] = sample.value
    return out


def expected(counts: list[int], total: float) -> dict[str, float]:
    running, out = 0, {}
    for le, count in zip(LE, counts, strict=True):
        running += count
        out[le] = running
    return {**out, "sum": total, "count": running}


def assert_only_public_series(text: str) -> None:
    assert "mediacache_latency_" not in text  # the histogram's parts are not exposed
    assert f"# TYPE {NAME} histogram" in text


def test_one_process_exposes_the_histogram_with_cumulative_buckets():
    first, second = slots(b0=3, b4=2, b13=1), slots(b0=1, b10=5)
    text = worker([(first, 0.75, 6), (second, 2.5, 6)], None)
    summed = [a + b for a, b in zip(first, second, strict=True)]
    assert histogram(text) == pytest.approx(expected(summed, 3.25))
    assert list(histogram(text))[: len(LE)] == list(LE)
    assert 'mediacache_media_requests_total{outcome="hit_l1"} 12.0' in text
    assert_only_public_series(text)


def test_before_any_request_every_bucket_is_zero():
    text = worker([], None)
    assert histogram(text) == expected([0] * len(LE), 0.0)


def test_multiprocess_mode_sums_the_workers(tmp_path):
    one, two = slots(b0=3, b13=1), slots(b0=1, b5=2, b7=4)
    worker([(one, 5.5, 4)], tmp_path)
    worker([(two, 0.5, 7)], tmp_path)
    text = worker([], tmp_path)  # the worker answering the scrape published nothing
    summed = [a + b for a, b in zip(one, two, strict=True)]
    assert histogram(text) == pytest.approx(expected(summed, 6.0))
    assert 'mediacache_media_requests_total{outcome="hit_l1"} 11.0' in text
    assert_only_public_series(text)
