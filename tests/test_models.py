"""MessageAttachment's short link and ApiKey's storage, against PostgreSQL."""

from __future__ import annotations

import io
from contextlib import redirect_stdout

import pytest
from django.core.management import call_command

from chat.models import ApiKey, MessageAttachment
from mediacache.core.hashes import is_media_hash

pytestmark = pytest.mark.django_db


def make_attachment(**fields) -> MessageAttachment:
    values = {"mime_type": "audio/ogg", "size": 10, "file": "chat/2026/01/01/x.ogg"}
    values.update(fields)
    attachment = MessageAttachment(**values)
    attachment.save()
    return attachment


def test_save_sets_hash_short_url_and_expiry(settings):
    settings.PUBLIC_BASE_URL = "https://backend.example.com"
    attachment = make_attachment()
    assert is_media_hash(attachment.media_hash)
    assert len(attachment.media_hash) <= 32
    assert attachment.short_url == f"https://backend.example.com/media/{attachment.media_hash}"
    assert (attachment.expires_at - attachment.created_at).days == 30


def test_existing_hash_is_kept():
    attachment = make_attachment(media_hash="legacyhash0123456789")
    attachment.save()
    assert attachment.media_hash == "legacyhash0123456789"
    assert attachment.short_url.endswith("/media/legacyhash0123456789")


def test_collision_draws_a_new_hash(monkeypatch):
    taken = make_attachment().media_hash
    fresh = "F" * 22
    draws = iter([taken, fresh])
    monkeypatch.setattr("mediacache.models.new_media_hash", lambda: next(draws))
    attachment = make_attachment()
    assert attachment.media_hash == fresh


def test_hashes_are_unique_and_many_rows_have_none():
    MessageAttachment.objects.bulk_create(
        [MessageAttachment(mime_type="a/b", size=1, file=f"k{i}") for i in range(3)]
    )  # legacy rows: NULL hash, allowed many times
    assert MessageAttachment.objects.filter(media_hash__isnull=True).count() == 3


def test_api_key_is_stored_hashed_and_verified():
    key, raw = ApiKey.issue("backend")
    assert raw not in key.key_hash
    assert ApiKey.objects.verify(raw) == key
    assert ApiKey.objects.verify(raw[:-1] + ("A" if raw[-1] != "A" else "B")) is None
    assert ApiKey.objects.verify("") is None
    assert ApiKey.objects.verify("mck_") is None


def test_create_api_key_prints_the_key_alone_on_the_last_line():
    out = io.StringIO()
    with redirect_stdout(out):
        call_command("create_api_key", "ci", stdout=out)
    last = out.getvalue().strip().splitlines()[-1]
    assert ApiKey.objects.verify(last).name == "ci"
