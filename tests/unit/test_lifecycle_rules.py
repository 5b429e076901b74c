"""The lifecycle rule's pure merge logic: build, compare, plan (no S3 needed)."""

from __future__ import annotations

import json

import pytest
from django.core.files.storage import FileSystemStorage

from mediacache.retention import lifecycle
from mediacache.store import LifecycleUnsupported, store_for

OURS = lifecycle.desired_rule("chat/", 30)
LOGS = {
    "ID": "logs-to-glacier",
    "Status": "Enabled",
    "Filter": {"Prefix": "logs/"},
    "Transitions": [{"Days": 60, "StorageClass": "GLACIER"}],
}
TMP = {"ID": "tmp-cleanup", "Status": "Enabled", "Filter": {}, "Expiration": {"Days": 1}}


def test_rule_id_is_stable_and_follows_the_prefix():
    assert lifecycle.rule_id_for("chat/") == "mediacache-expire-chat"
    assert lifecycle.rule_id_for("tenants/a/chat/") == "mediacache-expire-tenants-a-chat"
    assert OURS == {
        "ID": "mediacache-expire-chat",
        "Status": "Enabled",
        "Filter": {"Prefix": "chat/"},
        "Expiration": {"Days": 30},
    }


@pytest.mark.parametrize(("prefix", "days"), [("", 30), ("chat/", 0)])
def test_desired_rule_refuses_dangerous_values(prefix, days):
    with pytest.raises(ValueError, match=r"prefix|retention"):
        lifecycle.desired_rule(prefix, days)


def test_plan_appends_our_rule_and_keeps_the_others():
    result = lifecycle.plan([LOGS, TMP], OURS)
    assert result.action == "create"
    assert result.changed
    assert result.rules == [LOGS, TMP, OURS]


def test_plan_on_an_empty_bucket():
    assert lifecycle.plan([], OURS).rules == [OURS]


def test_plan_replaces_only_our_rule_in_place():
    old = {**OURS, "Expiration": {"Days": 7}}
    result = lifecycle.plan([LOGS, old, TMP], OURS)
    assert result.action == "update"
    assert result.current == old
    assert result.rules == [LOGS, OURS, TMP]


@pytest.mark.parametrize(
    "echoed",
    [
        OURS,
        # The deprecated top-level Prefix, as older configurations hold it.
        {"ID": OURS["ID"], "Status": "Enabled", "Prefix": "chat/", "Expiration": {"Days": 30}},
        # An And with only a prefix, and false flags some providers add.
        {
            "ID": OURS["ID"],
            "Status": "Enabled",
            "Filter": {"And": {"Prefix": "chat/"}},
            "Expiration": {"Days": 30, "ExpiredObjectDeleteMarker": False},
            "Transitions": [],
        },
    ],
)
def test_equivalent_spellings_are_unchanged(echoed):
    result = lifecycle.plan([LOGS, echoed], OURS)
    assert result.action == "unchanged"
    assert not result.changed
    assert result.rules == [LOGS, echoed]  # nothing rewritten, not even the spelling


@pytest.mark.parametrize(
    "different",
    [
        {**OURS, "Status": "Disabled"},
        {**OURS, "Filter": {"Prefix": "chat"}},
        {**OURS, "Filter": {"And": {"Prefix": "chat/", "Tags": [{"Key": "a", "Value": "b"}]}}},
        {**OURS, "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1}},
    ],
)
def test_any_real_difference_is_an_update(different):
    assert lifecycle.plan([different], OURS).action == "update"


def test_overlapping_expiry_rules_are_reported():
    parent = {"ID": "all", "Status": "Enabled", "Filter": {"Prefix": ""}, "Expiration": {"Days": 9}}
    child = {"ID": "c", "Status": "Enabled", "Prefix": "chat/x/", "Expiration": {"Days": 2}}
    disabled = {**parent, "ID": "off", "Status": "Disabled"}
    found = lifecycle.overlapping([parent, child, disabled, LOGS, OURS], OURS)
    assert [rule["ID"] for rule in found] == ["all", "c"]


def test_a_local_directory_has_no_lifecycle_rules(tmp_path):
    store = store_for(FileSystemStorage(location=tmp_path))
    with pytest.raises(LifecycleUnsupported):
        store.read_lifecycle()


def test_to_json_is_what_the_aws_cli_takes():
    assert json.loads(lifecycle.to_json([OURS])) == {"Rules": [OURS]}


# --- which changes can expire objects the bucket keeps now ------------------------


@pytest.mark.parametrize(
    ("current", "widens"),
    [
        (None, True),  # a new rule
        (OURS, False),  # the same rule
        ({**OURS, "Expiration": {"Days": 90}}, True),  # a shorter retention
        ({**OURS, "Expiration": {"Days": 7}}, False),  # a longer one: nothing goes earlier
        ({**OURS, "Status": "Disabled"}, True),
        ({**OURS, "Filter": {"Prefix": "chat/voice/"}}, True),  # ours covers more
        ({**OURS, "Filter": {"Prefix": ""}, "Expiration": {"Days": 60}}, True),
        ({**OURS, "Filter": {"Prefix": ""}, "Expiration": {"Days": 30}}, False),
        (
            {**OURS, "Filter": {"And": {"Prefix": "chat/", "Tags": [{"Key": "a", "Value": "b"}]}}},
            True,
        ),
        ({**OURS, "Expiration": {"Date": "2030-01-01T00:00:00Z"}}, True),
        ({"ID": OURS["ID"], "Status": "Enabled", "Filter": {"Prefix": "chat/"}}, True),
    ],
)
def test_a_rule_widens_when_it_may_expire_what_the_bucket_keeps_now(current, widens):
    assert lifecycle.widens(current, OURS) is widens
