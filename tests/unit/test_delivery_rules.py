"""The send queue's pure rules: backoff, what a failure means, receipts' shapes and order,
Prefer: wait, idempotency keys."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chat.delivery import outcome_of
from chat.idempotency import clean_key, fingerprint
from chat.receipts import RANK, parse_receipt
from chat.retry import RetryPolicy
from chat.waiting import MAX_WAIT, requested_wait
from evolution import (
    EvolutionAuthError,
    EvolutionDownloadError,
    EvolutionInstanceNotConnected,
    EvolutionServerError,
    EvolutionUnavailable,
    EvolutionValidationError,
)

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


@given(st.integers(min_value=1, max_value=40), st.integers(min_value=0, max_value=2**32))
def test_backoff_stays_within_its_ceiling_and_cap(attempt, seed):
    policy = RetryPolicy(base=2.0, cap=60.0)
    delay = policy.delay(attempt, random.Random(seed))
    assert policy.floor <= delay <= max(policy.floor, min(60.0, 2.0 * 2 ** (attempt - 1)))


def test_backoff_is_jittered():
    policy = RetryPolicy(base=2.0, cap=60.0)
    rng = random.Random(7)
    assert len({round(policy.delay(6, rng), 6) for _ in range(20)}) > 10


def test_no_retry_past_the_deadline():
    policy = RetryPolicy(base=10.0, cap=10.0, floor=5.0)
    assert policy.next_attempt(1, NOW, NOW + timedelta(seconds=4)) is None
    when = policy.next_attempt(1, NOW, NOW + timedelta(seconds=60))
    assert NOW + timedelta(seconds=5) <= when <= NOW + timedelta(seconds=10)
    assert policy.next_attempt(1, NOW, None) is not None


@pytest.mark.parametrize(
    ("error", "outcome"),
    [
        (EvolutionUnavailable("refused", maybe_sent=False), "retry"),
        (EvolutionUnavailable("503 from a proxy", status_code=503), "retry"),
        (EvolutionInstanceNotConnected("Connection Closed", status_code=500), "retry"),
        (EvolutionUnavailable("read timeout", maybe_sent=True), "unknown"),
        (EvolutionServerError("Evolution API error 500", status_code=500), "unknown"),
        (EvolutionServerError("no such path", status_code=404), "failed"),
        (EvolutionAuthError("401", status_code=401), "failed"),
        (EvolutionValidationError("exists: false", status_code=400), "failed"),
        (EvolutionDownloadError("403 from the media host", status_code=403), "failed"),
    ],
)
def test_what_a_failure_means(error, outcome):
    assert outcome_of(error) == outcome


def update(data: dict, date_time: str = "2026-12-01T10:00:00.123Z") -> dict:
    return {"event": "messages.update", "instance": "i", "data": data, "date_time": date_time}


def test_v2_receipt_shape_from_evolution_source():
    receipt = parse_receipt(
        update({"keyId": "3EB0AB", "remoteJid": "55@s.whatsapp.net", "fromMe": True,
                "participant": None, "status": "DELIVERY_ACK", "instanceId": "x"})
    )  # fmt: skip
    assert receipt is not None
    assert (receipt.evolution_id, receipt.step) == ("3EB0AB", "delivery_ack")
    assert receipt.at == datetime(2026, 12, 1, 10, 0, 0, 123000, tzinfo=UTC)


def test_older_receipt_shapes_are_read_too():
    nested = parse_receipt(update({"key": {"id": "3EB0", "fromMe": True}, "update": {"status": 4}}))
    assert nested is not None
    assert nested.step == "read"


@pytest.mark.parametrize(
    "data",
    [
        {"keyId": "3EB0", "fromMe": True, "status": "PENDING"},
        {"keyId": "3EB0", "fromMe": True, "status": "DELETED"},
        {"keyId": "3EB0", "fromMe": False, "status": "READ"},  # a received message's update
        {"keyId": "", "fromMe": True, "status": "READ"},
        {"fromMe": True, "status": "READ"},
        "not an object",
    ],
)
def test_what_is_not_a_receipt_of_ours(data):
    assert parse_receipt(update(data)) is None


def test_receipt_steps_are_ordered():
    assert sorted(RANK, key=RANK.__getitem__) == ["server_ack", "delivery_ack", "read", "played"]


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        (None, None),
        ("", None),
        ("respond-async", None),
        ("wait=10", 10.0),
        ("respond-async, wait=5", 5.0),
        ('wait="3"', 3.0),
        ("wait=999", MAX_WAIT),
        ("handling=lenient; wait=2.5", 2.5),
    ],
)
def test_prefer_wait(header, seconds):
    assert requested_wait(header) == seconds


def test_idempotency_keys_and_fingerprints():
    assert clean_key(None) is None
    assert clean_key(" k-1 ") == "k-1"
    for bad in ("x" * 256, "tab\there", "   "):
        with pytest.raises(ValueError, match="Idempotency-Key"):
            clean_key(bad)
    assert fingerprint({"a": 1, "b": "x"}) == fingerprint({"b": "x", "a": 1})
    assert fingerprint({"a": 1}) != fingerprint({"a": 2})
