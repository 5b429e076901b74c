"""Prometheus metrics, fed from :mod:`mediacache.core.counters` snapshots by the flusher.

Set ``PROMETHEUS_MULTIPROC_DIR`` (the production server script does) when the
server runs several worker processes: each writes its values there and
``/metrics`` sums them, whichever worker answers the scrape.

The latency histogram arrives pre-bucketed (the request path only bumps a list
slot), and prometheus-client's ``Histogram`` adds one value per ``observe()``.
So its buckets live in public Counters instead: one per upper bound (not
cumulative, +Inf last) and one for the sum, added to with ``inc(n)``. In
multiprocess mode each worker's counters go to its own file and
``MultiProcessCollector`` sums them like any counter. They are never exposed
as counters: at scrape time :class:`LatencyHistogram` (or, in multiprocess
mode, :class:`AllWorkers`) folds them -- this process's or the summed ones --
into the histogram ``mediacache_media_request_duration_seconds``, with the same
buckets, cumulative, and its ``_sum`` and ``_count`` (no ``_created``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from itertools import accumulate

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    generate_latest,
)
from prometheus_client.metrics_core import HistogramMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from mediacache.core.counters import LATENCY_BUCKETS, OUTCOMES, Snapshot

REQUESTS = Counter(
    "mediacache_media_requests",
    "Answers of /media/{hash} by outcome: hit_l1, hit_redis, miss, not_found, expired, error.",
    ["outcome"],
)
BYTES = Counter("mediacache_media_response_bytes", "Body bytes sent by /media/{hash}.")
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

LATENCY_NAME = "mediacache_media_request_duration_seconds"
_LATENCY_DOC = (
    "Time to answer /media/{hash}, from request to the last body byte handed to the server."
)
_LE = (*(str(bound) for bound in LATENCY_BUCKETS), "+Inf")  # as prometheus-client writes them
# The histogram's parts; registry=None: exposed only through the histogram.
_COUNTS_NAME = "mediacache_latency_bucket_observations"
_SUM_NAME = "mediacache_latency_observed_seconds"
_LATENCY_COUNTS = Counter(
    _COUNTS_NAME,
    "Observations per latency bucket (not cumulative).",
    ["le"],
    registry=None,
)
_LATENCY_SUM = Counter(_SUM_NAME, "Sum of observed latencies.", registry=None)
_LATENCY_PARTS = frozenset({_COUNTS_NAME, _SUM_NAME})
_LATENCY_CHILDREN = [_LATENCY_COUNTS.labels(le) for le in _LE]


def _latency_histogram(parts: Iterable[Metric]) -> HistogramMetricFamily:
    """The histogram from its parts' samples (one process's, or summed over workers)."""
    counts = dict.fromkeys(_LE, 0.0)
    total = 0.0
    for metric in parts:
        for sample in metric.samples:
            if not sample.name.endswith("_total"):
                continue  # _created
            if metric.name == _SUM_NAME:
                total += sample.value
            elif sample.labels.get("le") in counts:
                counts[sample.labels["le"]] += sample.value
    buckets = list(zip(_LE, accumulate(counts.values()), strict=True))
    return HistogramMetricFamily(LATENCY_NAME, _LATENCY_DOC, buckets=buckets, sum_value=total)


class LatencyHistogram(Collector):
    """This process's latency counters, exposed as the histogram."""

    def collect(self) -> Iterator[Metric]:
        yield _latency_histogram([*_LATENCY_COUNTS.collect(), *_LATENCY_SUM.collect()])

    def describe(self) -> Iterator[Metric]:
        yield HistogramMetricFamily(LATENCY_NAME, _LATENCY_DOC)


class AllWorkers(Collector):
    """Every worker's metrics summed by ``MultiProcessCollector``, with the latency
    counters folded into the histogram."""

    def collect(self) -> Iterator[Metric]:
        parts = []
        # prometheus_client.multiprocess has no type hints.
        summed = MultiProcessCollector(None).collect()  # type: ignore[no-untyped-call]
        for metric in summed:
            if metric.name in _LATENCY_PARTS:
                parts.append(metric)
            else:
                yield metric
        yield _latency_histogram(parts)


REGISTRY.register(LatencyHistogram())


def publish(snapshot: Snapshot) -> None:
    """Add a snapshot's counts to the Prometheus metrics."""
    for child, count in zip(_REQUEST_CHILDREN, snapshot.requests, strict=True):
        if count:
            child.inc(count)
    if any(snapshot.latency):
        for child, count in zip(_LATENCY_CHILDREN, snapshot.latency, strict=True):
            if count:
                child.inc(count)
        _LATENCY_SUM.inc(snapshot.latency_sum)
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


def exposition() -> tuple[bytes, str]:
    """The text format of every metric, summed over processes in multiprocess mode."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        registry.register(AllWorkers())
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
