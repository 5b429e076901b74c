"""apply_media_lifecycle against the real S3 endpoint (the pure merge logic: tests/unit).

Objects are made old by moving the clock the command counts with
(``mediacache.retention.old_objects.now``) forward: the S3 endpoint stamps
LastModified at upload, as S3 does.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from botocore.exceptions import ClientError
from django.core.management import CommandError, call_command

from mediacache.retention import old_objects
from tests.conftest import BUCKET, empty_bucket, s3_storage_settings
from tests.unit.test_lifecycle_rules import LOGS, OURS, TMP


@pytest.fixture
def bucket(s3) -> Iterator[str]:
    """The suite's bucket with no lifecycle configuration and no objects, before and after."""
    s3.delete_bucket_lifecycle(Bucket=BUCKET)
    empty_bucket(s3)
    yield BUCKET
    s3.delete_bucket_lifecycle(Bucket=BUCKET)
    empty_bucket(s3)


@pytest.fixture
def years_of_attachments(s3, bucket) -> dict[str, bytes]:
    """A host's attachments under the prefix, and a file beside it (not under the prefix)."""
    objects = {
        "chat/2023/05/01/a.ogg": b"a" * 1000,
        "chat/2024/02/11/b.jpg": b"b" * 2345,
        "chat/2025/09/30/c.pdf": b"c" * 10,
        "exports/2023.csv": b"d" * 99,
    }
    for key, body in objects.items():
        s3.put_object(Bucket=BUCKET, Key=key, Body=body)
    return objects


@pytest.fixture
def days_later(monkeypatch):
    """Move the clock the command counts with: every object now is that many days old."""

    def move(days: float) -> None:
        moved = datetime.now(UTC) + timedelta(days=days)
        monkeypatch.setattr(old_objects, "now", lambda: moved)

    return move


@pytest.fixture
def other_bucket(s3, s3_server, settings) -> Iterator[str]:
    """A second bucket, made the default storage for the test."""
    name = "mediacache-no-rules"
    s3.create_bucket(Bucket=name)
    settings.STORAGES = {**settings.STORAGES, "default": s3_storage_settings(s3_server.url, name)}
    yield name
    s3.delete_bucket(Bucket=name)


def rules_of(s3, bucket: str = BUCKET) -> list[dict]:
    try:
        return s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "NoSuchLifecycleConfiguration":
            raise
        return []


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("apply_media_lifecycle", *args, stdout=out, stderr=out)
    return out.getvalue()


def lifecycle_writes(s3_server) -> list[dict]:
    return [
        r
        for r in s3_server.recorded()
        if r["method"] in {"PUT", "DELETE"} and "lifecycle" in r.get("url", "")
    ]


def test_creates_the_rule(s3, bucket):
    output = run()
    assert "created" in output
    assert rules_of(s3) == [OURS]


def test_second_run_writes_nothing(s3, s3_server, bucket):
    run()
    s3_server.start_recording()
    output = run()
    assert lifecycle_writes(s3_server) == []
    assert "unchanged" in output
    assert rules_of(s3) == [OURS]


def test_recording_sees_lifecycle_writes(s3_server, bucket):
    """The no-write assertions above mean something only if a write would be seen."""
    s3_server.start_recording()
    run()
    assert len(lifecycle_writes(s3_server)) == 1


def test_unrelated_rules_survive(s3, bucket):
    s3.put_bucket_lifecycle_configuration(
        Bucket=BUCKET, LifecycleConfiguration={"Rules": [LOGS, TMP]}
    )
    before = rules_of(s3)
    assert "2 other rule(s) kept" in run()
    after = rules_of(s3)
    assert after[:2] == before
    assert after[2] == OURS
    run()
    assert rules_of(s3) == after


def test_a_changed_rule_is_updated_in_place(s3, bucket, settings):
    run()
    settings.MEDIACACHE = {**settings.MEDIACACHE, "RETENTION_DAYS": 14}
    output = run()
    assert "updated" in output
    assert rules_of(s3) == [{**OURS, "Expiration": {"Days": 14}}]


def test_check_fails_on_a_bucket_without_our_rule(s3, other_bucket):
    with pytest.raises(CommandError, match="missing on bucket mediacache-no-rules"):
        run("--check")
    assert rules_of(s3, other_bucket) == []


def test_check_fails_when_our_rule_differs(s3, bucket):
    stale = {**OURS, "Expiration": {"Days": 90}}
    s3.put_bucket_lifecycle_configuration(Bucket=BUCKET, LifecycleConfiguration={"Rules": [stale]})
    with pytest.raises(CommandError, match="differs"):
        run("--check")


def test_check_passes_and_prints_the_rules(s3, bucket):
    s3.put_bucket_lifecycle_configuration(Bucket=BUCKET, LifecycleConfiguration={"Rules": [LOGS]})
    run()
    output = run("--check")
    assert "OK: rule mediacache-expire-chat expires chat/ after 30 days" in output
    assert '"logs-to-glacier"' in output


def dry_run() -> tuple[dict, str]:
    """The JSON on stdout (ready for the AWS CLI), the verdict on stderr."""
    out, err = io.StringIO(), io.StringIO()
    call_command("apply_media_lifecycle", "--dry-run", stdout=out, stderr=err)
    return json.loads(out.getvalue()), err.getvalue()


def test_dry_run_writes_nothing(s3, s3_server, bucket):
    s3.put_bucket_lifecycle_configuration(Bucket=BUCKET, LifecycleConfiguration={"Rules": [LOGS]})
    s3_server.start_recording()
    shown, verdict = dry_run()
    assert lifecycle_writes(s3_server) == []
    assert rules_of(s3) == [LOGS]
    assert shown == {"Rules": [LOGS, OURS]}
    assert "would create rule mediacache-expire-chat" in verdict


def test_dry_run_when_up_to_date(s3, bucket):
    run()
    shown, verdict = dry_run()
    assert shown == {"Rules": [OURS]}
    assert "up to date; nothing would be written" in verdict


def test_refuses_a_local_directory_store(settings, tmp_path):
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path)},
        },
    }
    with pytest.raises(CommandError, match=r"not an S3 bucket.*purge_expired_media"):
        run()


def test_unreachable_bucket_is_a_clear_error(settings, s3_server):
    settings.STORAGES = {
        **settings.STORAGES,
        "default": s3_storage_settings(s3_server.url, "no-such-bucket-here"),
    }
    with pytest.raises(CommandError, match="Could not read the lifecycle rules"):
        run()


# --- objects already in the bucket ------------------------------------------------

OLD_UNDER_CHAT = "3 object(s) under chat/ (3,355 bytes) are older than 30 days"


def test_old_objects_under_the_prefix_refuse_the_rule(
    s3, s3_server, years_of_attachments, days_later
):
    days_later(400)
    s3_server.start_recording()
    with pytest.raises(CommandError) as refused:
        run()
    message = str(refused.value)
    assert refused.value.returncode == 1  # manage.py exits 1
    assert "Refusing to create rule mediacache-expire-chat" in message
    assert OLD_UNDER_CHAT in message
    assert "Nothing written" in message
    assert "apply_media_lifecycle --yes" in message
    assert lifecycle_writes(s3_server) == []
    assert rules_of(s3) == []


def test_yes_writes_the_rule_and_says_what_goes(s3, years_of_attachments, days_later):
    days_later(400)
    output = run("--yes")
    assert "created" in output
    assert f"As --yes confirmed, {OLD_UNDER_CHAT}" in output
    assert rules_of(s3) == [OURS]


def test_objects_inside_the_retention_do_not_stop_it(s3, years_of_attachments, days_later):
    days_later(29)
    output = run()
    assert "created" in output
    assert "Nothing expires at once: no object under chat/ is older than 30 days" in output
    assert rules_of(s3) == [OURS]


def test_an_identical_rule_stays_a_no_op_without_yes(
    s3, s3_server, years_of_attachments, days_later
):
    days_later(400)
    run("--yes")
    s3_server.start_recording()
    output = run()
    assert "unchanged" in output
    assert lifecycle_writes(s3_server) == []


def test_a_shorter_retention_is_counted_and_refused(
    s3, s3_server, years_of_attachments, days_later
):
    s3.put_bucket_lifecycle_configuration(
        Bucket=BUCKET, LifecycleConfiguration={"Rules": [{**OURS, "Expiration": {"Days": 90}}]}
    )
    days_later(45)  # kept by the 90-day rule, expired at once by a 30-day one
    with pytest.raises(
        CommandError, match=f"Refusing to update rule .*{re.escape(OLD_UNDER_CHAT)}"
    ):
        run()
    assert rules_of(s3) == [{**OURS, "Expiration": {"Days": 90}}]


def test_a_longer_retention_needs_no_yes(s3, years_of_attachments, days_later):
    s3.put_bucket_lifecycle_configuration(
        Bucket=BUCKET, LifecycleConfiguration={"Rules": [{**OURS, "Expiration": {"Days": 7}}]}
    )
    days_later(400)
    assert "updated" in run()
    assert rules_of(s3) == [OURS]


def test_check_prints_the_count(s3, years_of_attachments, days_later):
    days_later(400)
    out = io.StringIO()
    with pytest.raises(CommandError, match=r"missing.*--yes` puts it and expires those 3 object"):
        call_command("apply_media_lifecycle", "--check", stdout=out, stderr=out)
    assert f"Applying rule mediacache-expire-chat would expire at once: {OLD_UNDER_CHAT}" in (
        out.getvalue()
    )
    assert rules_of(s3) == []


def test_dry_run_prints_the_count_beside_the_json(s3, s3_server, years_of_attachments, days_later):
    days_later(400)
    s3_server.start_recording()
    shown, verdict = dry_run()
    assert shown == {"Rules": [OURS]}
    assert f"would expire at once: {OLD_UNDER_CHAT} (applying it needs --yes)" in verdict
    assert lifecycle_writes(s3_server) == []


def test_under_a_location_the_count_looks_where_the_rule_does(
    s3, s3_server, settings, bucket, days_later
):
    with_location = s3_storage_settings(s3_server.url)
    with_location["OPTIONS"]["location"] = "media"
    settings.STORAGES = {**settings.STORAGES, "default": with_location}
    s3.put_object(Bucket=BUCKET, Key="media/chat/2023/old.ogg", Body=b"x" * 42)
    s3.put_object(Bucket=BUCKET, Key="chat/2023/elsewhere.ogg", Body=b"y" * 7)  # not the host's
    days_later(400)

    with pytest.raises(CommandError, match=r"1 object\(s\) under media/chat/ \(42 bytes\)"):
        run()
    assert rules_of(s3) == []

    assert "As --yes confirmed, 1 object(s) under media/chat/" in run("--yes")
    assert [rule["Filter"] for rule in rules_of(s3)] == [{"Prefix": "media/chat/"}]
