"""The variants' backfill is the engine's (``mediacache.variants``) and reads the
registered model through its field map, so a host model with other fields works: no
variant field (refused, nothing touched), no ``duration``/``waveform``/``media_info``
(the variant is recorded, the rest left out, an undecodable file tried again)."""

from __future__ import annotations

import io
import uuid
from dataclasses import replace

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.management import CommandError, call_command, get_commands

from tests.media_gen import audio

OPUS = "audio/ogg; codecs=opus"


@pytest.fixture
def remap(settings):
    """Set MEDIACACHE["FIELDS"]: the registry reads it once per process, so read it again
    now and after the test."""
    from mediacache.registry import media_model

    def apply(fields: dict[str, str | None]) -> None:
        settings.MEDIACACHE = {**settings.MEDIACACHE, "FIELDS": fields}
        media_model.cache_clear()

    yield apply
    media_model.cache_clear()


def stored_row(body: bytes, mime_type: str = "audio/mp4"):
    from chat.models import MessageAttachment

    row = MessageAttachment(mime_type=mime_type, size=len(body), original_filename="memo.m4a")
    row.file.name = default_storage.save(
        f"chat/2026/11/01/{uuid.uuid4().hex}.m4a", ContentFile(body)
    )
    row.save()
    return row


def backfill_for(**fields):
    """The backfill of MessageAttachment as if its field map had ``fields`` (None: absent)."""
    from mediacache.engine import get_engine
    from mediacache.registry import MediaModel, media_model
    from mediacache.variants import VariantBackfill

    registered = media_model()
    return VariantBackfill(
        MediaModel(registered.model, replace(registered.fields, **fields)), get_engine()
    )


def test_the_command_is_the_engines():
    assert get_commands()["build_media_variants"] == "mediacache"


def test_without_a_variant_field_the_backfill_is_refused_before_touching_anything(
    db, redis_client, remap
):
    from mediacache.variants import VariantsUnsupported

    row = stored_row(audio("m4a", 1.0))
    with pytest.raises(VariantsUnsupported, match=r'MEDIACACHE\["FIELDS"\]\["variant"\]'):
        backfill_for(variant=None)
    with pytest.raises(VariantsUnsupported, match=r'MEDIACACHE\["FIELDS"\]\["content_type"\]'):
        backfill_for(content_type=None)

    remap({"variant": None})
    for args in ([], ["--dry-run"]):
        with pytest.raises(CommandError, match=r"chat\.MessageAttachment has no variant field"):
            call_command("build_media_variants", *args, stdout=io.StringIO())
    row.refresh_from_db()
    assert (row.variant.name, row.media_info) == ("", None)
    assert default_storage.listdir("chat/2026/11/01/")[1] == [row.file.name.rsplit("/", 1)[1]]


def test_without_decoded_fields_the_variant_is_recorded_and_the_rest_left_out(db, redis_client):
    row = stored_row(audio("m4a", 1.0))
    broken = stored_row(b"not audio at all" * 64, mime_type="audio/ogg")
    backfill = backfill_for(duration=None, waveform=None, media_info=None)
    assert not backfill.remembers_failures
    assert set(backfill.candidates()) == {row, broken}

    assert backfill.build(row) == "built"
    row.refresh_from_db()
    assert row.variant.name == row.file.name.replace(".m4a", ".variant.ogg")
    assert (row.variant_mime_type, row.variant_size) == (
        OPUS,
        default_storage.size(row.variant.name),
    )
    assert (row.duration_seconds, row.waveform, row.media_info) == (None, None, None)

    assert backfill.build(broken) == "none"  # nowhere to keep why: tried again next run
    broken.refresh_from_db()
    assert (broken.variant.name, broken.media_info) == ("", None)
    assert list(backfill.candidates()) == [broken]


def test_with_media_info_an_undecodable_file_is_remembered_until_retried(db, redis_client):
    broken = stored_row(b"not audio at all" * 64, mime_type="audio/ogg")
    backfill = backfill_for()
    assert backfill.build(broken) == "none"
    broken.refresh_from_db()
    assert broken.variant.name == ""
    assert "error" in broken.media_info
    assert list(backfill.candidates()) == []
    assert list(backfill.candidates(retry_failed=True)) == [broken]
