"""Retention end to end: expiry answers 404 without S3, Redis TTLs end at expiry, deletes
purge every tier, and purge_expired_media frees the bytes of expired attachments."""

from __future__ import annotations

import io
import time
from datetime import timedelta
from pathlib import Path

import botocore.config
import httpx
import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.management import CommandError, call_command
from django.utils import timezone

from mediacache.tiers.codec import redis_key
from tests.conftest import BUCKET, s3_storage_settings, upload
from tests.servers import free_port


def s3_requests(s3_server) -> list[dict]:
    return [r for r in s3_server.recorded() if "/moto-api/" not in r.get("url", "")]


def wait_for_key(redis_client, key: str, timeout: float = 5.0) -> None:
    """The Redis fill lands just after the MISS response (it does not hold the answer up)."""
    deadline = time.monotonic() + timeout
    while redis_client.get(key) in (None, b"MC0"):
        assert time.monotonic() < deadline, f"{key} never reached Redis"
        time.sleep(0.02)


def age(attachment_id: int, **delta: float) -> None:
    """Move an attachment's upload (and so its expiry) into the past."""
    from chat.models import MessageAttachment
    from mediacache.core.settings import media_settings

    created = timezone.now() - timedelta(**delta)
    MessageAttachment.objects.filter(pk=attachment_id).update(
        created_at=created, expires_at=created + media_settings().retention
    )


def purge(*args: str) -> str:
    out = io.StringIO()
    call_command("purge_expired_media", *args, stdout=out, stderr=out)
    return out.getvalue()


# --- serving ----------------------------------------------------------------------


def test_attachment_31_days_old_is_404_without_asking_s3(api, voice_note, s3_server):
    created = upload(api, voice_note, "voice.ogg")
    age(created["id"], days=31)
    s3_server.start_recording()
    assert httpx.get(created["short_url"]).status_code == 404
    assert httpx.head(created["short_url"]).status_code == 404
    assert s3_requests(s3_server) == []


def test_cached_ttl_never_outlives_the_object(api, voice_note, redis_client):
    from chat.models import MessageAttachment

    created = upload(api, voice_note, "voice.ogg")
    MessageAttachment.objects.filter(pk=created["id"]).update(
        expires_at=timezone.now() + timedelta(hours=1)
    )
    response = httpx.get(created["short_url"])
    assert response.headers["x-cache"] == "MISS"
    assert response.headers["cache-control"].startswith("public, max-age=")
    max_age = response.headers["cache-control"].split(", ")[1].removeprefix("max-age=")
    assert int(max_age) <= 3600
    key = redis_key(created["media_hash"])
    wait_for_key(redis_client, key)
    assert 0 < redis_client.ttl(key) <= 3600


def test_delete_is_404_at_once_even_right_after_a_hit(api, voice_note, redis_client, s3):
    from chat.models import MessageAttachment

    created = upload(api, voice_note, "voice.ogg")
    object_key = MessageAttachment.objects.get(pk=created["id"]).file.name
    assert httpx.get(created["short_url"]).headers["x-cache"] == "MISS"
    wait_for_key(redis_client, redis_key(created["media_hash"]))
    assert httpx.get(created["short_url"]).headers["x-cache"] == "HIT"

    assert api.delete(f"/api/attachments/{created['id']}").status_code == 204

    assert httpx.get(created["short_url"]).status_code == 404
    assert redis_client.get(redis_key(created["media_hash"])) in (None, b"MC0")
    assert api.get(f"/api/attachments/{created['id']}").status_code == 404
    assert s3.list_objects_v2(Bucket=BUCKET, Prefix=object_key).get("KeyCount") == 0


# --- purge_expired_media with the local directory store -----------------------------


@pytest.fixture
def local_store(settings, tmp_path) -> Path:
    """The embedded default: a FileSystemStorage in a temporary directory.

    No reset_engine(): the command deletes through the current default storage,
    and the engine's caches (L1, Redis) do not depend on the store. Resetting
    would also give the API's delete path (get_engine()) a different engine from
    the one the session's live server serves with, so later deletes would miss
    that server's L1.
    """
    root = tmp_path / "media"
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(root)},
        },
    }
    return root


def stored(key: str, body: bytes = b"x" * 10, **fields):
    from chat.models import MessageAttachment

    name = default_storage.save(key, ContentFile(body))
    attachment = MessageAttachment(mime_type="audio/ogg", size=len(body), **fields)
    attachment.file.name = name
    attachment.save()
    return attachment


@pytest.fixture
def attachments(local_store, db, redis_client) -> dict:
    """Three expired (one with cached copies), two current, one purged already."""
    from mediacache.core.headers import build_cached
    from mediacache.core.settings import media_settings
    from mediacache.engine import get_engine

    past = timezone.now() - timedelta(days=31)
    # The expiry given, not left to save(): a new row's default expiry is not the test's.
    expired = {"created_at": past, "expires_at": past + media_settings().retention}
    rows = {
        "old1": stored("chat/2026/10/01/a.ogg", **expired),
        "old2": stored("chat/2026/10/01/b.ogg", **expired),
        "old3": stored("chat/2026/10/02/c.ogg", **expired),
        "new1": stored("chat/2026/11/20/d.ogg"),
        "new2": stored("chat/2026/11/20/e.ogg", expires_at=timezone.now() + timedelta(hours=1)),
    }
    gone = stored("chat/2026/09/01/f.ogg", **expired, purged_at=past)
    default_storage.delete(gone.file.name)
    rows["done"] = gone
    # Cached copies as the serving path writes them (the entry's own expiry aside).
    entry = build_cached(rows["old1"].media_object(), b"x" * 10)
    assert get_engine().writer.put(entry, 3600)
    get_engine().l1.put(entry.obj.media_hash, entry, 3600)
    return rows


def test_purge_deletes_expired_files_and_marks_rows(attachments, local_store, redis_client):
    from mediacache.engine import get_engine

    output = purge()

    assert "Purged 3 expired attachment(s) (30 bytes)" in output
    for name in ("old1", "old2", "old3", "done"):
        row = attachments[name]
        row.refresh_from_db()
        assert row.purged_at is not None
        assert not (local_store / row.file.name).exists()
    for name in ("new1", "new2"):
        row = attachments[name]
        row.refresh_from_db()
        assert row.purged_at is None
        assert (local_store / row.file.name).read_bytes() == b"x" * 10
    old = attachments["old1"].media_hash
    # A tombstone, not the bytes: a fill racing the purge cannot bring them back.
    assert redis_client.keys(f"media:{{{old}}}*") == [redis_key(old).encode()]
    assert redis_client.get(redis_key(old)) == b"MC0"
    assert get_engine().l1.get(old) is None
    # Emptied day directories go; the prefix directory uploads write into stays.
    assert not (local_store / "chat/2026/10").exists()
    assert (local_store / "chat").is_dir()


def test_purge_again_is_a_no_op(attachments, local_store):
    purge()
    marked = {}
    for name, row in attachments.items():
        row.refresh_from_db()
        marked[name] = row.purged_at
    output = purge()
    assert "Purged 0 expired attachment(s) (0 bytes)" in output
    for name, row in attachments.items():
        row.refresh_from_db()
        assert row.purged_at == marked[name]
    assert (local_store / attachments["new1"].file.name).exists()


def test_purge_dry_run_changes_nothing(attachments, local_store, redis_client):
    output = purge("--dry-run")
    assert "3 expired attachment(s) (30 bytes) would be purged" in output
    for row in attachments.values():
        row.refresh_from_db()
        assert (row.purged_at is None) == (row is not attachments["done"])
    assert (local_store / attachments["old1"].file.name).exists()
    assert redis_client.keys(redis_key(attachments["old1"].media_hash) + "*") != []


def test_purge_in_small_batches(attachments, local_store):
    assert "Purged 3 expired" in purge("--batch-size", "1")


# --- purge_expired_media with S3 ----------------------------------------------------


def test_purge_on_s3_deletes_the_object_and_tolerates_the_lifecycle_rule(api, voice_note, s3):
    from chat.models import MessageAttachment

    first = upload(api, voice_note, "a.ogg")
    second = upload(api, voice_note, "b.ogg")
    keep = upload(api, voice_note, "c.ogg")
    keys = {
        row.pk: row.file.name
        for row in MessageAttachment.objects.filter(pk__in=[first["id"], second["id"]])
    }
    age(first["id"], days=31)
    age(second["id"], days=31)
    s3.delete_object(Bucket=BUCKET, Key=keys[second["id"]])  # the rule got there first

    assert "Purged 2 expired attachment(s)" in purge()
    left = {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])}
    assert left == {MessageAttachment.objects.get(pk=keep["id"]).file.name}
    assert MessageAttachment.objects.filter(purged_at__isnull=False).count() == 2
    assert "Purged 0 expired" in purge()
    assert httpx.get(keep["short_url"]).status_code == 200


def test_store_down_leaves_rows_unmarked_for_the_next_run(attachments, settings):
    from chat.models import MessageAttachment

    dead = s3_storage_settings(f"http://127.0.0.1:{free_port()}")
    dead["OPTIONS"]["client_config"] = botocore.config.Config(
        connect_timeout=0.5, read_timeout=0.5, retries={"max_attempts": 0}
    )
    settings.STORAGES = {**settings.STORAGES, "default": dead}
    with pytest.raises(CommandError, match="3 object"):
        purge()
    assert MessageAttachment.objects.filter(purged_at__isnull=True).count() == 5
