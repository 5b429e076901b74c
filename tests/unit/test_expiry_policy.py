"""The expiry a row without one gets: the policies the save path and the backfill share."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from mediacache.core.expiry import DEFAULT_EXPIRY, ExpiryPolicy, expiry_for

NOW = datetime(2026, 3, 1, tzinfo=UTC)
RETENTION = timedelta(days=30)
LONG_AGO = NOW - timedelta(days=90)


@pytest.mark.parametrize(
    ("policy", "created", "expected"),
    [
        (ExpiryPolicy.FROM_NOW, LONG_AGO, NOW + RETENTION),
        (ExpiryPolicy.FROM_NOW, None, NOW + RETENTION),
        (ExpiryPolicy.FROM_CREATED, LONG_AGO, LONG_AGO + RETENTION),  # past: dead at once
        (ExpiryPolicy.FROM_CREATED, None, NOW + RETENTION),  # no upload time: from now
        (ExpiryPolicy.NEVER, LONG_AGO, None),
    ],
)
def test_each_policy(policy, created, expected):
    assert expiry_for(policy, now=NOW, retention=RETENTION, created=created) == expected


def test_the_default_never_makes_a_link_that_is_already_dead():
    expiry = expiry_for(DEFAULT_EXPIRY, now=NOW, retention=RETENTION, created=LONG_AGO)
    assert expiry is not None
    assert expiry > NOW


def test_policy_names_are_the_command_line_values():
    assert [p.value for p in ExpiryPolicy] == ["from-now", "from-created", "never"]
