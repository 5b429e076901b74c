"""The engine's variants' backfill, from the installed wheel, on the host's own model:
``inbox.Attachment`` has no variant field, so ``build_media_variants`` refuses, saying
what to add, and touches nothing."""

from __future__ import annotations

import io
from pathlib import Path

import httpx
import pytest
from django.core.management import CommandError, call_command, get_commands

VOICE = (Path(__file__).resolve().parents[3] / "tests" / "fixtures" / "voice.ogg").read_bytes()


def test_the_command_comes_from_the_installed_engine():
    import mediacache.management.commands.build_media_variants as command

    assert get_commands()["build_media_variants"] == "mediacache"
    assert "site-packages" in Path(command.__file__).resolve().parts


@pytest.mark.parametrize("args", [[], ["--dry-run"]])
def test_without_a_variant_field_it_refuses_and_touches_nothing(live, args):
    from inbox.models import Attachment

    uploaded = httpx.post(f"{live}/inbox/upload", files={"file": ("memo.ogg", VOICE, "audio/ogg")})
    row = Attachment.objects.get(pk=uploaded.json()["id"])

    out = io.StringIO()
    with pytest.raises(CommandError) as refused:
        call_command("build_media_variants", *args, stdout=out, stderr=out)
    message = str(refused.value)
    assert "inbox.Attachment has no variant field" in message
    assert 'MEDIACACHE["FIELDS"]["variant"]' in message
    assert out.getvalue() == ""  # refused before counting or converting anything

    assert Attachment.objects.get(pk=row.pk).upload.name == row.upload.name
    served = httpx.get(row.short_url)
    assert (served.status_code, served.content) == (200, VOICE)  # the upload, as it came
