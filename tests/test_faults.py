"""Faults under load, the short core of ``make chaos`` (chaos/README.md).

One service runs as a subprocess against private PostgreSQL, Redis and S3 (moto)
that these tests break and restore while a load generator fetches cached and
uncached objects and uploads, checking every byte. Outages last a few seconds;
``make chaos`` runs the same scenarios longer and prints the table.
The shared PostgreSQL and Redis are never touched.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from chaos import scenarios
from chaos.scenarios import Result, Timing
from tests.faults import Stack

TIMING = Timing()


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with Stack() as running:
        yield running


def passed(result: Result) -> bool:
    print(result.explain())  # shown with -s or on failure
    return result.ok


def test_redis_killed_serves_from_the_store_then_hits_again(stack):
    result = scenarios.redis_killed(stack, TIMING)
    assert passed(result), result.explain()


def test_redis_slow_falls_back_instead_of_queueing(stack):
    result = scenarios.redis_slow(stack, TIMING)
    assert passed(result), result.explain()


def test_s3_down_hits_still_served_misses_503_nothing_bad_cached(stack):
    result = scenarios.s3_down(stack, TIMING)
    assert passed(result), result.explain()


def test_postgres_down_hits_served_uploads_503(stack):
    result = scenarios.postgres_down(stack, TIMING)
    assert passed(result), result.explain()


def test_crash_between_store_and_database_leaves_nothing_behind(stack):
    result = scenarios.crash_between_store_and_db(stack, TIMING)
    assert passed(result), result.explain()


def test_concurrent_uploads_are_distinct_and_byte_identical(stack):
    result = scenarios.concurrent_uploads(stack, TIMING)
    assert passed(result), result.explain()


def test_behind_a_proxy_forged_headers_flood_then_valid_links(stack):
    result = scenarios.behind_proxy(stack, TIMING)
    assert passed(result), result.explain()
