"""Conversion faults under load, the short core of ``make chaos``'s two conversion rows
(chaos/conversions.py): a worker killed mid-job, a decoder that hangs.

A private stack (tests.faults.Stack: the service as a subprocess, its own PostgreSQL,
Redis and S3), so its conversion workers are that service's children; the time limit
is lowered so that a hung decoder costs seconds.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from chaos import conversions
from chaos.scenarios import Timing
from tests.faults import Stack

TIMING = Timing()


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with Stack(extra_env={"MEDIA_TRANSCODE_TIMEOUT": "4"}) as running:
        yield running


def test_a_worker_killed_mid_job_refuses_that_upload_and_nothing_else(stack):
    result = conversions.worker_killed(stack, TIMING)
    print(result.explain())
    assert result.ok, result.explain()


def test_a_hanging_decoder_is_stopped_at_the_time_limit(stack):
    result = conversions.decoder_hangs(stack, TIMING)
    print(result.explain())
    assert result.ok, result.explain()
