"""The engine's retention commands, from the installed wheel, on the host's own model
(``inbox.Attachment``: its file field is ``upload``, its expiry ``expires``, it records
no size and has no purged marker) and its own S3 storage."""

from __future__ import annotations

import io
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.management import CommandError, call_command, get_commands
from django.utils import timezone

VOICE = (Path(__file__).resolve().parents[3] / "tests" / "fixtures" / "voice.ogg").read_bytes()


def run(*args: str) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out, stderr=out)
    return out.getvalue()


def test_the_commands_come_from_the_engine():
    commands = get_commands()
    assert commands["purge_expired_media"] == "mediacache"
    assert commands["sweep_orphan_objects"] == "mediacache"


def test_sweep_deletes_orphans_and_keeps_the_hosts_attachments(live):
    from inbox.models import Attachment

    kept = Attachment.objects.create(
        upload=default_storage.save("chat/sweep/kept.ogg", ContentFile(VOICE)),
        name="kept.ogg",
        content_type="audio/ogg",
    )
    orphan = default_storage.save("chat/sweep/orphan.bin", ContentFile(b"no row"))
    elsewhere = default_storage.save("exports/report.csv", ContentFile(b"not ours"))

    listed = run("sweep_orphan_objects", "--min-age", "0", "--dry-run")  # the host's KEY_PREFIX
    assert f"{orphan}\t6\t0 min old" in listed
    assert kept.upload.name not in listed
    assert "under 'chat/'" in listed
    assert default_storage.exists(orphan)  # a dry run deletes nothing

    swept = run("sweep_orphan_objects", "--min-age", "0", "--prefix", "chat/sweep/")
    assert "1 orphan object(s) (6 bytes) deleted; scanned 2 under 'chat/sweep/'" in swept
    assert not default_storage.exists(orphan)
    assert default_storage.exists(kept.upload.name)
    assert default_storage.exists(elsewhere)
    assert httpx.get(kept.short_url).content == VOICE


def test_purge_counts_then_refuses_without_a_purged_marker(live):
    from inbox.models import Attachment

    uploaded = httpx.post(f"{live}/inbox/upload", files={"file": ("old.ogg", VOICE, "audio/ogg")})
    row = Attachment.objects.get(pk=uploaded.json()["id"])
    Attachment.objects.filter(pk=row.pk).update(expires=timezone.now() - timedelta(days=1))

    counted = run("purge_expired_media", "--dry-run")
    assert "Dry run: 1 expired attachment(s) (size not recorded) would be purged" in counted
    assert "inbox.Attachment has no purged marker" in counted

    with pytest.raises(CommandError, match=r'MEDIACACHE\["FIELDS"\]\["purged_at"\]'):
        run("purge_expired_media")
    assert default_storage.exists(row.upload.name)  # refused before touching anything
