"""apply_media_lifecycle against the real S3 endpoint (the pure merge logic: tests/unit)."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

import pytest
from botocore.exceptions import ClientError
from django.core.management import CommandError, call_command

from tests.conftest import BUCKET, s3_storage_settings
from tests.unit.test_lifecycle_rules import LOGS, OURS, TMP


@pytest.fixture
def bucket(s3) -> Iterator[str]:
    """The suite's bucket with no lifecycle configuration, before and after."""
    s3.delete_bucket_lifecycle(Bucket=BUCKET)
    yield BUCKET
    s3.delete_bucket_lifecycle(Bucket=BUCKET)


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
