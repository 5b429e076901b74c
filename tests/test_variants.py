"""WhatsApp-ready media: voice notes as Ogg Opus, images as JPEG, video checked.

Every input is made in the test (PyAV, Pillow), uploaded through the real API,
and what the short link serves is decoded back with PyAV.
"""

from __future__ import annotations

import io
import logging
import time

import httpx
import pytest
from django.core.management import call_command

from evolution import payloads
from mediacache.tiers.codec import redis_key
from tests.conftest import BUCKET, upload
from tests.media import png
from tests.media_gen import AUDIO_FORMATS, audio, decoded, file_name, image, video_mp4

OPUS = "audio/ogg; codecs=opus"
NUMBER = "5511999990000"
SECONDS = 3.0


def media_settings(settings, **values) -> None:
    settings.MEDIACACHE = {**settings.MEDIACACHE, **values}


def stored_keys(s3) -> list[str]:
    return [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])]


def waveform_once_filled(attachment_id: int) -> list[int]:
    """The waveform the task worker records (chat.tasks.fill_waveform) once it has run."""
    from chat.models import MessageAttachment

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        waveform = MessageAttachment.objects.get(pk=attachment_id).waveform
        if waveform is not None:
            return list(waveform)
        time.sleep(0.05)
    raise AssertionError(f"no waveform recorded for attachment {attachment_id}")


# -- voice notes --------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(AUDIO_FORMATS))
def test_every_voice_note_format_is_served_as_ogg_opus_mono(api, tasks_worker, kind):
    body = audio(kind, SECONDS)
    source = decoded(body)
    created = upload(api, body, file_name(kind))

    assert created["variant_mime_type"] == OPUS
    assert abs(created["duration_seconds"] - source["duration"]) <= 0.05
    if kind == "ogg_opus_mono":  # recognised from its pages: the waveform comes after
        assert created["waveform"] is None
        waveform = waveform_once_filled(created["id"])
    else:
        waveform = created["waveform"]
    assert len(waveform) == 64
    assert all(isinstance(v, int) and 0 <= v <= 100 for v in waveform)
    assert max(waveform) == 100

    served = httpx.get(created["short_url"])
    assert served.status_code == 200
    assert served.headers["content-type"] == OPUS
    assert int(served.headers["content-length"]) == created["variant_size"]
    got = decoded(served.content)
    assert got["format"] == "ogg"
    assert got["codec"] == "opus"
    assert got["channels"] == 1
    assert got["sample_rate"] == 48000
    assert abs(got["duration"] - SECONDS) <= 0.05
    assert abs(got["duration"] - source["duration"]) <= 0.05

    original = httpx.get(created["original_url"])
    assert original.status_code == 200
    assert original.content == body
    assert original.headers["content-type"] == created["mime_type"]
    assert created["mime_type"].startswith("audio/")  # a recording is audio, not video/webm
    if kind == "ogg_opus_mono":
        assert served.content == body  # passed through, byte-identical
    else:
        assert served.content != body


def test_original_is_cached_apart_from_the_variant(api, redis_client):
    body = audio("webm_opus", 1.0)
    created = upload(api, body, "rec.webm")
    media_hash = created["media_hash"]
    variant = httpx.get(created["short_url"])
    original = httpx.get(created["original_url"])
    assert [variant.headers["x-cache"], original.headers["x-cache"]] == ["MISS", "MISS"]
    again = httpx.get(created["original_url"] + ".webm?timestamp=1")
    assert again.headers["x-cache"] == "HIT"
    assert again.content == body
    assert original.headers["etag"] != variant.headers["etag"]
    assert redis_client.exists(redis_key(media_hash), redis_key(f"{media_hash}/original")) == 2


def test_undecodable_audio_is_refused_and_nothing_is_stored(api, s3):
    from chat.models import MessageAttachment

    head = audio("ogg_opus_mono", 1.0)[:200]  # an Ogg Opus header, then garbage
    response = api.post("/api/attachments/", files={"file": ("broken.ogg", head + b"\x00" * 5000)})
    assert response.status_code == 400, response.text
    assert response.json()["error"].startswith("the file could not be decoded: ")
    mp3ish = b"ID3\x04\x00\x00\x00\x00\x00\x00" + b"\xff\xfb\x90\x00" * 2000
    response = api.post("/api/attachments/", files={"file": ("x.mp3", mp3ish)})
    assert response.status_code == 400, response.text
    assert not MessageAttachment.objects.exists()
    assert stored_keys(s3) == []


@pytest.mark.parametrize("size", [5000, 3 * 1024 * 1024], ids=["in-memory", "spooled-to-disk"])
def test_decoder_errors_name_the_upload_never_a_server_path(api, size):
    """The decoder names the file it could not read; the client sees its own file name."""
    import tempfile
    from pathlib import Path

    root = str(Path(__file__).resolve().parents[1])
    broken = audio("ogg_opus_mono", 1.0)[:200] + b"\x00" * size
    mp3ish = b"ID3\x04\x00\x00\x00\x00\x00\x00" + b"\xff\xfb\x90\x00" * (size // 4)
    named = []
    for name, body in (("broken.ogg", broken), ("voice memo.mp3", mp3ish)):
        response = api.post("/api/attachments/", files={"file": (name, body)})
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert error.startswith("the file could not be decoded: ")
        for server_path in ("/tmp", tempfile.gettempdir(), root, "mediacache-in-", ".upload"):
            assert server_path not in error, error
        named.append(name in error)
    assert any(named)  # where the decoder names the file, it is by the client's name


def test_flagged_voice_note_must_be_audio(api):
    response = api.post(
        "/api/attachments/", files={"file": ("x.png", png())}, data={"voice_note": "true"}
    )
    assert response.status_code == 400
    assert "decoded" in response.json()["error"]


def test_transcode_time_limit(api, settings):
    media_settings(settings, TRANSCODE_TIMEOUT=0.01)
    # 30 s of audio, whose conversion takes far longer than 10 ms on any machine.
    response = api.post("/api/attachments/", files={"file": ("a.wav", audio("wav", 30.0))})
    assert response.status_code == 400
    assert "longer than" in response.json()["error"]


@pytest.mark.parametrize("steps", [10, 0])
def test_conversions_run_at_a_lower_cpu_priority(settings, tmp_path, steps):
    """Serving wins the cores: the child gives up MEDIA_TRANSCODE_NICE steps of priority."""
    import os

    from mediacache.media import transcode

    media_settings(settings, TRANSCODE_NICE=steps)
    source = tmp_path / "a.wav"
    source.write_bytes(audio("wav", 0.5))
    outcome = transcode.voice_variant(str(source), str(tmp_path / "a.ogg"))
    assert outcome.data["nice"] == min(19, os.nice(0) + steps)


def test_stored_under_the_same_prefix(tasks_worker, api, s3):
    created = upload(api, audio("mp3", 1.0), "a.mp3")
    keys = sorted(stored_keys(s3))
    assert len(keys) == 2
    assert all(k.startswith("chat/") for k in keys)
    assert any(k.endswith(".variant.ogg") for k in keys)
    assert (
        created["variant_size"]
        == s3.head_object(Bucket=BUCKET, Key=next(k for k in keys if k.endswith(".variant.ogg")))[
            "ContentLength"
        ]
    )


# -- sending ------------------------------------------------------------------------


def send(api, attachment_id: int, **extra) -> httpx.Response:
    """Queue a send and wait for its outcome (the worker is the tasks_worker fixture)."""
    return api.post(
        "/api/messages/",
        json={"number": NUMBER, "attachment_id": attachment_id, **extra},
        headers={"Prefer": "wait=20"},
    )


def test_voice_note_goes_with_encoding_false_and_evolution_gets_the_variant(
    tasks_worker, api, evolution
):
    created = upload(api, audio("webm_opus", 2.0), "recording.webm")
    variant = httpx.get(created["short_url"]).content
    response = send(api, created["id"])
    assert response.status_code == 201, response.text
    assert response.json()["warnings"] == []
    (call,) = evolution.sent
    assert call["endpoint"] == "sendWhatsAppAudio"
    assert call["json"]["encoding"] is False
    assert call["json"]["audio"] == created["short_url"]
    assert call["download_url"] == created["short_url"]  # no ?timestamp= appended
    assert call["download_bytes"] == variant
    assert call["download_headers"]["content-type"] == OPUS


def test_audio_encoding_setting_turns_evolutions_encoding_back_on(
    tasks_worker, api, evolution, settings
):
    settings.EVOLUTION = {**settings.EVOLUTION, "AUDIO_ENCODING": True}
    created = upload(api, audio("mp3", 1.0), "a.mp3")
    assert send(api, created["id"]).status_code == 201
    (call,) = evolution.sent
    assert call["json"]["encoding"] is True
    assert call["download_url"].startswith(created["short_url"] + "?timestamp=")


def test_voice_note_over_the_play_button_size_is_sent_with_a_warning(
    tasks_worker, api, evolution, settings, caplog
):
    media_settings(settings, VOICE_PLAY_BUTTON_BYTES=1000)
    created = upload(api, audio("wav", 1.0), "a.wav")
    with caplog.at_level(logging.WARNING, logger="mediacache.whatsapp"):
        response = send(api, created["id"])
    assert response.status_code == 201, response.text
    (warning,) = response.json()["warnings"]
    assert "play button" in warning
    assert any("play button" in r.getMessage() for r in caplog.records)


def test_payload_encoding_in_both_api_versions():
    url = "https://x.example.com/a"
    v2 = payloads.audio_payload(NUMBER, url, api_version=2, encoding=False)
    assert v2 == {"number": NUMBER, "audio": url, "encoding": False}
    v1 = payloads.audio_payload(NUMBER, url, api_version=1, encoding=False)
    assert v1["options"]["encoding"] is False
    assert "encoding" not in payloads.audio_payload(NUMBER, url, api_version=2)
    assert payloads.audio_payload(NUMBER, url, api_version=1)["options"]["encoding"] is True


# -- images -------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["WEBP", "TIFF", "BMP", "HEIF"])
def test_images_whatsapp_does_not_show_get_a_jpeg(api, fmt):
    from PIL import Image

    body = image(fmt)
    created = upload(api, body, f"photo.{fmt.lower()}")
    assert created["variant_mime_type"] == "image/jpeg"
    served = httpx.get(created["short_url"])
    assert served.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(served.content)).format == "JPEG"
    assert httpx.get(created["original_url"]).content == body


def test_large_image_gets_a_jpeg_within_the_limit_and_small_ones_none(
    tasks_worker, api, settings, evolution
):
    media_settings(settings, IMAGE_MAX_BYTES=60_000)
    body = image("PNG", (400, 300), noisy=True)
    assert len(body) > 60_000
    created = upload(api, body, "big.png")
    assert created["variant_mime_type"] == "image/jpeg"
    assert created["variant_size"] <= 60_000
    assert upload(api, png(), "small.png")["variant_mime_type"] is None

    response = send(api, created["id"])
    assert response.status_code == 201, response.text
    (call,) = evolution.sent
    assert call["json"]["mimetype"] == "image/jpeg"
    assert call["json"]["fileName"] == "big.jpg"
    assert len(call["download_bytes"]) == created["variant_size"]


# -- video --------------------------------------------------------------------------


def test_h264_mp4_goes_as_video(tasks_worker, api, evolution):
    created = upload(api, video_mp4(), "clip.mp4")
    assert created["variant_mime_type"] is None
    response = send(api, created["id"])
    assert response.status_code == 201, response.text
    assert evolution.sent[0]["json"]["mediatype"] == "video"


def test_video_whatsapp_cannot_play_is_422_unless_sent_as_a_document(tasks_worker, api, evolution):
    from chat.models import Message

    body = video_mp4(codec="mpeg4")
    created = upload(api, body, "old.mp4")
    refused = send(api, created["id"])
    assert refused.status_code == 422, refused.text
    assert "not H.264" in refused.json()["error"]
    assert "as_document" in refused.json()["error"]
    assert not Message.objects.exists()
    assert evolution.requests_received == 0

    response = send(api, created["id"], as_document=True)
    assert response.status_code == 201, response.text
    (call,) = evolution.sent
    assert call["json"]["mediatype"] == "document"
    assert call["json"]["fileName"] == "old.mp4"
    assert call["download_bytes"] == body


def test_video_over_the_limit_is_422(tasks_worker, api, evolution, settings):
    media_settings(settings, VIDEO_MAX_BYTES=1000)
    created = upload(api, video_mp4(2.0), "clip.mp4")
    refused = send(api, created["id"])
    assert refused.status_code == 422
    assert "over WhatsApp's" in refused.json()["error"]


def test_document_over_the_limit_is_422_and_nothing_is_sent(tasks_worker, api, evolution, settings):
    media_settings(settings, DOCUMENT_MAX_BYTES=1000)
    small = upload(api, b"%PDF-1.4 " + b"x" * 500, "small.pdf")
    large = upload(api, b"%PDF-1.4 " + b"x" * 5000, "large.pdf")
    assert send(api, small["id"]).status_code == 201
    refused = send(api, large["id"])
    assert refused.status_code == 422
    assert "documents up to" in refused.json()["error"]
    assert len(evolution.sent) == 1


# -- backfill -----------------------------------------------------------------------


def test_backfill_builds_missing_voice_variants_once(api, settings, capsys):
    from chat.models import MessageAttachment

    media_settings(settings, VOICE_VARIANTS=False)
    body = audio("m4a", 1.0)
    created = upload(api, body, "memo.m4a")
    assert created["variant_mime_type"] is None
    before = httpx.get(created["short_url"])
    assert before.content == body  # cached as the upload
    media_settings(settings, VOICE_VARIANTS=True)

    call_command("build_media_variants")
    out = capsys.readouterr().out
    assert "1/1" in out
    assert "1 encoded" in out
    row = MessageAttachment.objects.get(pk=created["id"])
    assert row.variant_mime_type == OPUS
    assert len(row.waveform) == 64
    after = httpx.get(created["short_url"])
    assert after.headers["content-type"] == OPUS  # the cached upload was purged
    assert decoded(after.content)["codec"] == "opus"

    call_command("build_media_variants")
    assert "0 voice note(s) without a variant" in capsys.readouterr().out


def test_delete_removes_the_variant_too(api, s3):
    created = upload(api, audio("wav", 1.0), "a.wav")
    httpx.get(created["original_url"])
    assert len(stored_keys(s3)) == 2
    assert api.delete(f"/api/attachments/{created['id']}").status_code == 204
    assert stored_keys(s3) == []
    assert httpx.get(created["original_url"]).status_code == 404


def test_purge_of_an_expired_voice_note_deletes_its_variant_too(api, s3):
    from tests.test_retention import age, purge

    created = upload(api, audio("wav", 1.0), "a.wav")
    kept = upload(api, audio("mp3", 1.0), "b.mp3")
    assert len(stored_keys(s3)) == 4  # two originals, two variants
    assert httpx.get(created["original_url"]).status_code == 200
    age(created["id"], days=31)

    assert "Purged 1 expired" in purge()
    assert len(stored_keys(s3)) == 2
    assert httpx.get(created["short_url"]).status_code == 404
    assert httpx.get(created["original_url"]).status_code == 404
    assert httpx.get(kept["short_url"]).headers["content-type"] == OPUS
