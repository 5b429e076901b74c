"""``manage.py sweep_orphan_objects``: objects a crash left without a row are deleted,
nothing else is: not objects with rows, not young ones, not other prefixes."""

from __future__ import annotations

import os
import time
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from tests.conftest import BUCKET, empty_bucket

ORPHAN = "chat/2020/01/01/0123456789abcdef0123456789abcdef.bin"


def sweep(*args: str) -> str:
    out = StringIO()
    call_command("sweep_orphan_objects", *args, stdout=out)
    return out.getvalue()


def keys(s3) -> set[str]:
    listed = s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])
    return {item["Key"] for item in listed}


def attach(key: str, body: bytes):
    from chat.models import MessageAttachment

    row = MessageAttachment(mime_type="application/octet-stream", size=len(body))
    row.file.name = key
    row.save()
    return row


@pytest.mark.django_db
def test_s3_orphans_are_listed_then_deleted_and_nothing_else(s3):
    empty_bucket(s3)
    kept = [f"chat/2020/01/0{i}/kept{i}.bin" for i in range(1, 4)]
    for key in kept:
        s3.put_object(Bucket=BUCKET, Key=key, Body=b"has a row")
        attach(key, b"has a row")
    orphans = {ORPHAN, "chat/2020/02/02/other.ogg"}
    for key in orphans:
        s3.put_object(Bucket=BUCKET, Key=key, Body=b"no row")
    s3.put_object(Bucket=BUCKET, Key="exports/report.csv", Body=b"not ours")

    listed = sweep("--dry-run", "--min-age", "0", "--batch-size", "2")
    assert all(key in listed for key in orphans)
    assert not any(key in listed for key in kept)
    assert "2 orphan object(s) (12 bytes) would be deleted; scanned 5" in listed
    assert keys(s3) >= orphans  # a dry run deletes nothing

    assert "0 orphan object(s)" in sweep()  # default --min-age 60: all are younger
    assert keys(s3) >= orphans

    assert "2 orphan object(s) (12 bytes) deleted" in sweep("--min-age", "0", "--batch-size", "2")
    assert keys(s3) == {*kept, "exports/report.csv"}
    assert "0 orphan object(s)" in sweep("--min-age", "0")  # idempotent


def test_local_store_keeps_young_and_attached_files(db, tmp_path, settings):
    from django.core.files.storage import storages

    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path)},
        },
    }
    assert storages["default"].location == str(tmp_path)

    def write(key: str, age_minutes: float) -> str:
        path = tmp_path / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * 10)
        stamp = time.time() - age_minutes * 60
        os.utime(path, (stamp, stamp))
        return key

    attached = write("chat/2020/01/01/attached.bin", 600)
    attach(attached, b"x" * 10)
    old = write("chat/2020/01/02/old-orphan.bin", 120)
    young = write("chat/2020/01/03/young-orphan.bin", 5)
    outside = write("elsewhere/old.bin", 600)

    out = sweep()
    assert "1 orphan object(s) (10 bytes) deleted" in out
    assert old in out
    assert not (tmp_path / old).exists()
    assert not (tmp_path / "chat/2020/01/02").exists()  # emptied directories go too
    assert (tmp_path / "chat").is_dir()  # the prefix itself stays
    for key in (attached, young, outside):
        assert (tmp_path / key).exists()


def test_refuses_an_empty_prefix(db):
    with pytest.raises(CommandError, match="prefix"):
        sweep("--prefix", "/")


@pytest.mark.django_db
def test_a_variant_object_counts_as_attached(s3):
    from chat.models import MessageAttachment

    if not any(f.name == "variant" for f in MessageAttachment._meta.fields):
        pytest.skip("this model has no variant field")
    empty_bucket(s3)
    row = attach("chat/2020/01/01/upload.webm", b"upload")
    row.variant.name = "chat/2020/01/01/upload.ogg"
    row.save()
    for key in (row.file.name, row.variant.name):
        s3.put_object(Bucket=BUCKET, Key=key, Body=b"x")
    assert "0 orphan object(s)" in sweep("--min-age", "0")
    assert keys(s3) == {row.file.name, row.variant.name}
