"""Prometheus metrics, fed from :mod:`mediacache.core.counters` snapshots by the flusher.

Set ``PROMETHEUS_MULTIPROC_DIR`` (the production server script does) when the
server runs several worker processes: each writes its values there and
``/metrics`` sums them, whichever worker answers the scrape.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess as _multiprocess

from mediacache.core.counters import LATENCY_BUCKETS, OUTCOMES, Snapshot

REQUESTS = Counter(
    "mediacache_media_requests",
    "Answers of /media/{hash} by outcome: hit_l1, hit_redis, miss, not_found, expired, error.",
    ["outcome"],
)
BYTES = Counter("mediacache_media_response_bytes", "Body bytes sent by /media/{hash}.")
LATENCY = Histogram(
    "mediacache_media_request_duration_seconds",
    "Time to answer /media/{hash}, from request to the last body byte handed to the server.",
    buckets=LATENCY_BUCKETS,
)
STORE_REQUESTS = Counter(
    "mediacache_store_requests", "Requests to the object store (S3) by operation.", ["operation"]
)
STORE_ERRORS = Counter(
    "mediacache_store_errors", "Failed object store requests by operation.", ["operation"]
)
COALESCED = Counter(
    "mediacache_singleflight_coalesced",
    "Requests that waited for another request's fetch of the same object.",
)
REDIS_ERRORS = Counter("mediacache_redis_errors", "Redis calls that failed or timed out.")
EVOLUTION_SENDS = Counter(
    "mediacache_evolution_sends", "Sends through Evolution API by result.", ["result"]
)
L1_BYTES = Gauge(
    "mediacache_l1_bytes", "Bytes held by the in-process tier.", multiprocess_mode="livesum"
)
L1_OBJECTS = Gauge(
    "mediacache_l1_objects", "Objects held by the in-process tier.", multiprocess_mode="livesum"
)
REDIS_MEMORY = Gauge(
    "mediacache_redis_used_memory_bytes",
    "Redis used_memory, sampled by the flusher.",
    multiprocess_mode="mostrecent",
)

_REQUEST_CHILDREN = [REQUESTS.labels(outcome) for outcome in OUTCOMES]


def publish(snapshot: Snapshot) -> None:
    """Add a snapshot's counts to the Prometheus metrics."""
    for child, count in zip(_REQUEST_CHILDREN, snapshot.requests, strict=True):
        if count:
            child.inc(count)
    if any(snapshot.latency):
        _add_observations(LATENCY, snapshot.latency, snapshot.latency_sum)
    if snapshot.bytes_served:
        BYTES.inc(snapshot.bytes_served)
    for op, count in snapshot.store_requests.items():
        STORE_REQUESTS.labels(op).inc(count)
    for op, count in snapshot.store_errors.items():
        STORE_ERRORS.labels(op).inc(count)
    if snapshot.coalesced:
        COALESCED.inc(snapshot.coalesced)
    if snapshot.redis_errors:
        REDIS_ERRORS.inc(snapshot.redis_errors)
    for result, count in snapshot.evolution.items():
        EVOLUTION_SENDS.labels(result).inc(count)


def _add_observations(histogram: Histogram, counts: list[int], total: float) -> None:
    """Add pre-bucketed observations. prometheus-client only offers ``observe()``
    one value at a time, so this adds to its per-bucket values directly (its
    buckets are stored non-cumulatively, one per upper bound, +Inf last)."""
    histogram._sum.inc(total)
    for bucket, count in zip(histogram._buckets, counts, strict=True):
        if count:
            bucket.inc(count)


def exposition() -> tuple[bytes, str]:
    """The text format of every metric, summed over processes in multiprocess mode."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        _multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
