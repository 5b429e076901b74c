"""The engine's purge and sweep read the registered model through its field map, so a
host model with other fields works: no purged marker (refused, nothing touched), no
size (bytes not counted), a variant that is the upload itself."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.utils import timezone


@pytest.fixture
def local_store(settings, tmp_path) -> Path:
    root = tmp_path / "media"
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(root)},
        },
    }
    return root


def expired_row(key: str, **fields):
    from chat.models import MessageAttachment

    past = timezone.now() - timedelta(days=31)
    row = MessageAttachment(
        mime_type="audio/ogg", size=10, created_at=past, expires_at=past + timedelta(days=30)
    )
    row.file.name = default_storage.save(key, ContentFile(b"x" * 10))
    for name, value in fields.items():
        setattr(row, name, value)
    row.save()
    return row


def purge_for(**fields):
    """The purge of MessageAttachment as if its field map had ``fields`` (None: absent)."""
    from mediacache.engine import get_engine
    from mediacache.registry import MediaModel, media_model
    from mediacache.retention.purge import ExpiredMediaPurge

    registered = media_model()
    mapped = MediaModel(registered.model, replace(registered.fields, **fields))
    return ExpiredMediaPurge(mapped, get_engine(), key_prefix="chat/")


def test_without_a_purged_marker_the_purge_refuses_before_touching_anything(
    db, local_store, redis_client
):
    from mediacache.retention.purge import PurgeUnsupported

    row = expired_row("chat/2026/10/01/a.ogg")
    purge = purge_for(purged_at=None)
    assert purge.pending(timezone.now()).rows == 1  # a dry run still counts
    with pytest.raises(PurgeUnsupported, match=r'MEDIACACHE\["FIELDS"\]\["purged_at"\]'):
        purge.run(500)
    assert (local_store / row.file.name).exists()
    row.refresh_from_db()
    assert row.purged_at is None


def test_without_a_size_field_the_rows_are_purged_and_bytes_not_counted(
    db, local_store, redis_client
):
    row = expired_row("chat/2026/10/01/a.ogg")
    purge = purge_for(size=None)
    assert purge.pending(timezone.now()).bytes is None
    assert list(purge.run(500)) == [row.pk]
    assert (purge.totals.purged, purge.totals.bytes, purge.totals.failed) == (1, None, 0)
    assert not (local_store / row.file.name).exists()


def test_a_variant_that_is_the_upload_itself_goes_with_it(db, local_store, redis_client):
    from chat.models import MessageAttachment

    if not any(f.name == "variant" for f in MessageAttachment._meta.fields):
        pytest.skip("this model has no variant field")
    row = expired_row("chat/2026/10/01/a.ogg")
    row.variant.name = row.file.name  # an upload already WhatsApp-ready
    row.save()
    purge = purge_for()
    list(purge.run(500))
    assert (purge.totals.purged, purge.totals.failed) == (1, 0)
    assert not (local_store / row.file.name).exists()


def test_the_sweep_counts_a_key_named_by_any_key_field(db, local_store):
    from mediacache.registry import media_model
    from mediacache.retention.sweep import OrphanSweep

    row = expired_row("chat/2026/10/01/a.ogg")
    row.variant.name = default_storage.save("chat/2026/10/01/a.opus", ContentFile(b"v"))
    row.save()
    orphan = default_storage.save("chat/2026/10/01/orphan.bin", ContentFile(b"o"))
    sweep = OrphanSweep(media_model(), key_prefix="chat/", min_age=timedelta(0))
    found = []
    totals = sweep.run(dry_run=True, on_orphan=found.append)
    assert [o.key for o in found] == [orphan]
    assert (totals.scanned, totals.orphans) == (3, 1)
    with pytest.raises(ValueError, match="prefix"):
        OrphanSweep(media_model(), key_prefix="chat/", prefix="/")
