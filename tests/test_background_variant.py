"""A large voice note (over VOICE_BACKGROUND_BYTES) is answered at once, stored as it
came; a worker makes its Ogg Opus variant; a send queued meanwhile waits for it and then
sends the variant, never the upload."""

from __future__ import annotations

import time

import httpx

from tests.conftest import upload
from tests.media_gen import audio

OPUS = "audio/ogg; codecs=opus"


def wait_for(predicate, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.05)
    raise AssertionError("not reached")


def test_large_voice_note_is_answered_at_once_and_sent_as_its_variant(
    api, evolution, settings, tasks_worker
):
    from chat.models import MessageAttachment

    settings.VOICE_BACKGROUND_BYTES = 1000
    settings.MESSAGE_DELIVERY = {**settings.MESSAGE_DELIVERY, "SEND_DEADLINE": 60.0}
    recording = audio("webm_opus", 2.0)
    created = upload(api, recording, "recording.webm")
    assert created["variant_pending"] is True
    assert created["variant_mime_type"] is None
    sent = api.post(
        "/api/messages/",
        json={"number": "5511999990000", "attachment_id": created["id"]},
        headers={"Prefer": "wait=20"},
    )
    assert sent.status_code == 201, sent.text
    row = MessageAttachment.objects.get(pk=created["id"])
    assert row.variant_pending is False
    assert row.variant_mime_type == OPUS
    (call,) = evolution.sent
    assert call["endpoint"] == "sendWhatsAppAudio"
    assert call["json"]["encoding"] is False  # the variant is Ogg Opus already
    assert call["download_bytes"] == httpx.get(created["short_url"]).content
    assert call["download_bytes"] != recording
    assert sent.json()["attempts"] == 1  # waiting for the variant is not an attempt


def test_small_voice_notes_still_get_their_variant_before_the_answer(api, settings, voice_note):
    settings.VOICE_BACKGROUND_BYTES = 10 * 1024 * 1024
    created = upload(api, voice_note, "voice.ogg")
    assert created["variant_pending"] is False
    assert created["variant_mime_type"] == OPUS
