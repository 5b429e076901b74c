"""Mediacache inside an existing Django project, installed from its wheel."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import boto3
import httpx
from django.core.management import call_command

import mediacache

VOICE = (Path(__file__).resolve().parents[3] / "tests" / "fixtures" / "voice.ogg").read_bytes()


def test_the_engine_comes_from_the_installed_wheel():
    installed = Path(mediacache.__file__).resolve()
    assert "site-packages" in installed.parts, installed
    assert Path(sys.prefix).resolve() in installed.parents


def test_upload_through_host_code_then_miss_then_hit(live, s3_endpoint):
    created = httpx.post(f"{live}/inbox/upload", files={"file": ("nota.ogg", VOICE, "audio/ogg")})
    assert created.status_code == 201, created.text
    short_url = created.json()["short_url"]
    assert short_url.startswith(f"{live}/media/")
    first = httpx.get(short_url)
    second = httpx.get(short_url + "?timestamp=1730000000000")
    assert (first.status_code, second.status_code) == (200, 200)
    assert first.headers["x-cache"] == "MISS"
    assert second.headers["x-cache"] == "HIT"
    assert first.content == second.content == VOICE
    assert second.headers["content-type"] == "audio/ogg"
    assert second.headers["content-disposition"] == 'inline; filename="nota.ogg"'

    from inbox.models import Attachment

    stored = Attachment.objects.get(short_url=short_url).upload.name
    bucket = boto3.client(
        "s3", endpoint_url=s3_endpoint, aws_access_key_id="testing",
        aws_secret_access_key="testing", region_name="us-east-1",
    )  # fmt: skip
    head = bucket.head_object(Bucket="host-media", Key=f"media/{stored}")  # under the location
    assert head["ContentLength"] == len(VOICE)


def test_backfill_gives_legacy_rows_their_links(live):
    from inbox.models import Attachment

    Attachment.objects.bulk_create(
        Attachment(upload=f"chat/inbox/old{i}.ogg", name=f"old{i}.ogg", content_type="audio/ogg")
        for i in range(50)
    )  # rows from before Mediacache: no hash, no link
    out = io.StringIO()
    call_command("generate_media_hashes", "--model", "inbox.Attachment", stdout=out)
    assert "Hashed 50 row(s)" in out.getvalue()
    assert not Attachment.objects.filter(media_hash__isnull=True).exists()
    assert all(a.short_url == f"{live}/media/{a.media_hash}" for a in Attachment.objects.all())


def test_send_from_host_code_through_evolution(live, evolution_double):
    from inbox.models import Attachment

    from evolution import EvolutionClient
    from mediacache.whatsapp import send_via_evolution

    created = httpx.post(f"{live}/inbox/upload", files={"file": ("nota.ogg", VOICE, "audio/ogg")})
    attachment = Attachment.objects.get(pk=created.json()["id"])
    with EvolutionClient(evolution_double.url, "host-key", "host") as client:
        result = send_via_evolution(client, "5511999990000", attachment)
    assert result.message_id
    (call,) = evolution_double.sent
    assert call["endpoint"] == "sendWhatsAppAudio"
    assert call["download_url"].startswith(attachment.short_url + "?timestamp=")
    assert call["download_bytes"] == VOICE
    assert call["download_headers"]["X-Cache"] == "HIT"
