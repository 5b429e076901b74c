"""generate_media_hashes on PostgreSQL: 10,000 legacy rows, rows that have hashes, reruns,
and the expiry old rows get (their new links served by the running service)."""

from __future__ import annotations

import io
import re
from datetime import timedelta

import httpx
import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from chat.models import MessageAttachment
from mediacache.core.hashes import is_media_hash, new_media_hash
from tests.conftest import BUCKET

pytestmark = pytest.mark.django_db

BASE = "https://old.example.com"
LEGACY_ROWS = 10_000


def backfill(*args: str) -> str:
    out = io.StringIO()
    call_command("generate_media_hashes", *args, stdout=out, stderr=out)
    return out.getvalue()


def legacy_rows(count: int, **fields) -> None:
    """Rows as a deployment from before short links holds them: no hash, no URL."""
    now = timezone.now()
    values = {"mime_type": "audio/ogg", "size": 10, "created_at": now}
    values |= fields
    MessageAttachment.objects.bulk_create(
        [MessageAttachment(file=f"chat/2026/01/01/{i}.ogg", **values) for i in range(count)],
        batch_size=2000,
    )


@pytest.fixture
def hashed(settings) -> dict[int, tuple[str, str]]:
    """A few rows that already have a hash (one with a URL from another base): pk -> both."""
    settings.PUBLIC_BASE_URL = BASE
    rows = [
        MessageAttachment(mime_type="image/png", size=5, file=f"chat/x/{i}.png") for i in range(3)
    ]
    for row in rows:
        row.save()
    MessageAttachment.objects.filter(pk=rows[0].pk).update(short_url="https://elsewhere/media/x")
    pks = [row.pk for row in rows]
    found = MessageAttachment.objects.filter(pk__in=pks).values_list(
        "pk", "media_hash", "short_url"
    )
    return {pk: (media_hash, short_url) for pk, media_hash, short_url in found}


def test_backfills_ten_thousand_rows(settings, hashed):
    legacy_rows(LEGACY_ROWS)

    output = backfill()

    rows = list(MessageAttachment.objects.values_list("pk", "media_hash", "short_url"))
    assert len(rows) == LEGACY_ROWS + len(hashed)
    hashes = [h for _, h, _ in rows]
    assert None not in hashes
    assert len(set(hashes)) == len(hashes)
    assert all(is_media_hash(h) and len(h) <= 32 for h in hashes)
    for pk, media_hash, short_url in rows:
        if pk in hashed:
            assert (media_hash, short_url) == hashed[pk]  # untouched, even the odd URL
        else:
            assert short_url == f"{BASE}/media/{media_hash}"
    assert f"{LEGACY_ROWS:,} row(s) without a media hash" in output
    assert f"[{'#' * 30}] {LEGACY_ROWS:,}/{LEGACY_ROWS:,} rows" in output
    assert re.search(r"\d[\d,]* rows/s", output)
    assert f"Hashed {LEGACY_ROWS:,} row(s)" in output
    # Ten batches of 1,000: one progress line each (stdout is not a terminal here).
    assert len(re.findall(r"^\[[#.]{30}\] ", output, re.MULTILINE)) == 10

    again = backfill()
    assert "0 row(s) without a media hash" in again
    assert "Hashed 0 row(s)" in again
    assert list(MessageAttachment.objects.values_list("pk", "media_hash", "short_url")) == rows


def test_dry_run_changes_nothing(hashed):
    legacy_rows(25)
    output = backfill("--dry-run")
    assert "25 row(s) without a media hash would get one" in output
    assert "Nothing written" in output
    assert MessageAttachment.objects.filter(media_hash__isnull=True).count() == 25


def test_small_batches_and_missing_expiry(settings):
    """Rows 40 days old: by default their expiry counts from the backfill, not the upload."""
    settings.PUBLIC_BASE_URL = BASE
    created = timezone.now() - timedelta(days=40)
    legacy_rows(7, created_at=created)
    set_expiry = timezone.now() + timedelta(days=3)
    legacy_rows(2, expires_at=set_expiry)

    before = timezone.now()
    output = backfill("--batch-size", "3")
    after = timezone.now()

    assert "Expiry of rows without one (from-now): now + 30 days." in output
    assert "Hashed 9 row(s)" in output
    assert "expiry set on 7" in output
    assert len(re.findall(r"^\[[#.]{30}\] ", output, re.MULTILINE)) == 3
    expiries = sorted(MessageAttachment.objects.values_list("expires_at", flat=True))
    assert expiries[:2] == [set_expiry] * 2  # a row with an expiry keeps it
    assert len(set(expiries[2:])) == 1  # one "now" for the run
    assert before + timedelta(days=30) <= expiries[2] <= after + timedelta(days=30)


# --- the expiry of rows older than the retention ------------------------------------

NINETY_DAYS = timedelta(days=90)


def expiries() -> set:
    return set(MessageAttachment.objects.values_list("expires_at", flat=True))


def test_from_created_counts_from_the_upload(settings):
    created = timezone.now() - NINETY_DAYS
    legacy_rows(4, created_at=created)
    output = backfill("--expires", "from-created")
    assert (
        "(from-created): upload time + 30 days (rows uploaded before that get links that answer 404"
        in output
    )
    assert "expiry set on 4" in output
    assert expiries() == {created + timedelta(days=30)}


def test_never_leaves_the_rows_without_expiry_and_a_later_save_keeps_it(settings):
    legacy_rows(4, created_at=timezone.now() - NINETY_DAYS)
    assert "(0 also an expiry)" in backfill("--expires", "never", "--dry-run")
    output = backfill("--expires", "never")
    assert "(never): none: the link and the object are kept until deleted" in output
    assert "expiry set on 0" in output
    assert expiries() == {None}
    row = MessageAttachment.objects.first()
    row.mime_type = "audio/mpeg"
    row.save()  # has its link: save() leaves its expiry as the backfill chose
    assert expiries() == {None}


def test_a_legacy_row_saved_before_the_backfill_gets_the_same_expiry(settings):
    """save() and the backfill share the default: now + retention, never a dead link."""
    legacy_rows(2, created_at=timezone.now() - NINETY_DAYS)
    saved, backfilled = MessageAttachment.objects.order_by("pk")
    before = timezone.now()
    saved.save()
    backfill()
    after = timezone.now()
    saved.refresh_from_db()
    backfilled.refresh_from_db()
    for row in (saved, backfilled):
        assert is_media_hash(row.media_hash)
        assert before + timedelta(days=30) <= row.expires_at <= after + timedelta(days=30)


def test_unknown_policy_is_refused():
    with pytest.raises(CommandError, match="invalid choice: 'forever'"):
        backfill("--expires", "forever")


def old_attachment(s3, key: str, body: bytes) -> MessageAttachment:
    """A row and its object from 90 days ago, from before short links."""
    s3.put_object(Bucket=BUCKET, Key=key, Body=body, ContentType="audio/ogg")
    created = timezone.now() - NINETY_DAYS
    (row,) = MessageAttachment.objects.bulk_create(
        [MessageAttachment(file=key, mime_type="audio/ogg", size=len(body), created_at=created)]
    )
    return row


@pytest.mark.parametrize(
    ("args", "status"),
    [((), 200), (("--expires", "never"), 200), (("--expires", "from-created"), 404)],
)
def test_the_link_of_a_row_90_days_old(live, s3, voice_note, args, status):
    """Served by the running service: live by default, dead at once only when asked."""
    row = old_attachment(s3, "chat/2025/09/01/old.ogg", voice_note)
    backfill(*args)
    row.refresh_from_db()
    assert row.short_url == f"{live.url}/media/{row.media_hash}"
    response = httpx.get(row.short_url)
    assert response.status_code == status
    if status == 200:
        assert response.content == voice_note


def test_a_collision_is_retried_row_by_row(settings, hashed, monkeypatch):
    """The first hash drawn is one that exists: the batch UPDATE fails, then each row retries."""
    from mediacache.management.commands import generate_media_hashes as command

    legacy_rows(5)
    taken = next(iter(hashed.values()))[0]
    draws = iter([taken])
    monkeypatch.setattr(command, "new_media_hash", lambda: next(draws, None) or new_media_hash())

    output = backfill()

    assert "Hashed 5 row(s)" in output
    assert "5 retried one by one after a collision" in output
    hashes = list(MessageAttachment.objects.values_list("media_hash", flat=True))
    assert len(set(hashes)) == len(hashes) == 8
    assert MessageAttachment.objects.filter(media_hash=taken).count() == 1


def test_rebuild_urls_after_the_base_url_changes(settings, hashed):
    legacy_rows(40)
    backfill()
    settings.PUBLIC_BASE_URL = "https://media.example.com"

    output = backfill("--rebuild-urls", "--batch-size", "16")

    assert f"{40 + len(hashed)} short URL(s) to rewrite" in output
    assert f"Rewrote {40 + len(hashed)} short URL(s)" in output
    for media_hash, short_url in MessageAttachment.objects.values_list("media_hash", "short_url"):
        assert short_url == f"https://media.example.com/media/{media_hash}"
    assert "Rewrote 0 short URL(s)" in backfill("--rebuild-urls")


def test_rebuild_urls_dry_run(settings, hashed):
    settings.PUBLIC_BASE_URL = "https://media.example.com"
    output = backfill("--rebuild-urls", "--dry-run")
    assert f"{len(hashed)} short URL(s) would be rewritten" in output
    assert {
        pk: (h, u)
        for pk, h, u in MessageAttachment.objects.values_list("pk", "media_hash", "short_url")
    } == hashed


def test_rebuild_urls_fills_a_missing_url(settings, hashed):
    pk = next(pk for pk, (_, url) in hashed.items() if url.startswith(BASE))
    MessageAttachment.objects.filter(pk=pk).update(short_url=None)
    assert "Rewrote 2 short URL(s)" in backfill("--rebuild-urls")
    assert MessageAttachment.objects.get(pk=pk).short_url == f"{BASE}/media/{hashed[pk][0]}"
