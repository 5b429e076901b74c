"""The write path: conversions in long-lived workers, killed alone; cheap checks first.

Through the real API of the in-process service (its conversion workers are children of
this test process). "Nothing half-stored": after a refused upload the bucket is empty
and no row exists, although the upload's own store write ran beside its conversion.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import httpx
import pytest

from chat.models import MessageAttachment
from mediacache.media import pool
from tests.conftest import BUCKET, upload
from tests.media_gen import audio, video_mp4


def stored_keys(s3) -> list[str]:
    return [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])]


def media_settings(settings, **values) -> None:
    settings.MEDIACACHE = {**settings.MEDIACACHE, **values}


def test_uploads_do_not_start_a_process_each(api):
    recording = audio("wav", 0.5)  # converted: a worker's job
    pool.shutdown()  # a fresh pool, to count what these uploads start
    for i in range(6):
        created = upload(api, recording, f"v{i}.wav")
        assert created["variant_mime_type"] == "audio/ogg; codecs=opus"
    current = pool.current()
    assert current is not None
    assert current.started == 1  # sequential uploads: one worker did every job


def test_an_ogg_opus_voice_note_is_stored_without_a_conversion(api, voice_note, tasks_worker):
    """Recognised from its pages: no worker at upload; the task worker fills the waveform."""
    pool.shutdown()
    created = upload(api, voice_note, "voice.ogg")
    assert pool.current() is None  # this process started no conversion
    assert created["variant_mime_type"] == "audio/ogg; codecs=opus"
    assert created["variant_size"] == len(voice_note)
    assert created["duration_seconds"] == 1.821
    assert created["waveform"] is None
    row = MessageAttachment.objects.get(pk=created["id"])
    assert row.media_info["from"] == "header"
    assert httpx.get(created["short_url"]).content == voice_note
    deadline = time.monotonic() + 30
    while (waveform := api.get(f"/api/attachments/{created['id']}").json()["waveform"]) is None:
        assert time.monotonic() < deadline, "the waveform was never filled"
        time.sleep(0.05)
    assert len(waveform) == 64
    assert max(waveform) == 100


def test_a_waveform_that_cannot_be_made_leaves_null(api, voice_note, s3, caplog):
    """The stored object is gone when the task runs: logged, counted, the row unchanged."""
    from chat.services import fill_waveform
    from mediacache.core.counters import STATS

    created = upload(api, voice_note, "voice.ogg")
    row = MessageAttachment.objects.get(pk=created["id"])
    s3.delete_object(Bucket=BUCKET, Key=row.file.name)
    STATS.take()
    assert fill_waveform(row.pk) == "failed"
    assert STATS.take().events.get("waveform:failed") == 1
    assert "waveform of attachment" in caplog.text
    row.refresh_from_db()
    assert row.waveform is None
    assert "waveform_error" in row.media_info  # so recovery does not try it forever
    assert fill_waveform(row.pk) == "failed"  # tried again by hand: still null


def test_a_lost_waveform_task_is_enqueued_again_by_recovery(api, voice_note):
    from datetime import timedelta

    from django.utils import timezone
    from django_tasks_db.models import DBTaskResult

    from chat.recovery import recover

    created = upload(api, voice_note, "voice.ogg")
    failed = upload(api, voice_note, "broken.ogg")
    queued = DBTaskResult.objects.filter(task_path="chat.tasks.fill_waveform")
    assert queued.count() == 2  # enqueued in the upload's transaction
    queued.delete()  # lost, as with a queue that was down
    long_ago = timezone.now() - timedelta(minutes=5)
    MessageAttachment.objects.update(created_at=long_ago)
    row = MessageAttachment.objects.get(pk=failed["id"])
    MessageAttachment.objects.filter(pk=row.pk).update(
        media_info={**row.media_info, "waveform_error": "gone"}
    )

    assert recover()["waveforms_reenqueued"] == 1
    (again,) = queued.all()
    assert again.args_kwargs["args"] == [created["id"]]


def test_a_filled_waveform_is_not_made_twice(api, voice_note):
    from chat.services import fill_waveform

    created = upload(api, voice_note, "voice.ogg")
    assert fill_waveform(created["id"]) == "filled"
    first = MessageAttachment.objects.get(pk=created["id"]).waveform
    assert fill_waveform(created["id"]) == "skipped"
    assert MessageAttachment.objects.get(pk=created["id"]).waveform == first


def test_a_refused_upload_leaves_nothing_stored(api, s3, settings):
    media_settings(settings, TRANSCODE_TIMEOUT=0.01)
    # 30 s of audio: its conversion takes far longer than 10 ms on any machine (1 s of it
    # was converted within 10 ms once, by a warm worker on a quiet machine).
    response = api.post("/api/attachments/", files={"file": ("a.wav", audio("wav", 30.0))})
    assert response.status_code == 400
    assert "longer than" in response.json()["error"]
    assert stored_keys(s3) == []
    assert not MessageAttachment.objects.exists()


def test_a_large_refused_upload_leaves_nothing_stored(api, s3):
    """Over Django's in-memory limit: a temporary file, written from a handle of its own."""
    body = b"\x00" * (3 * 1024 * 1024)
    response = api.post(
        "/api/attachments/", files={"file": ("x.bin", body)}, data={"voice_note": "true"}
    )
    assert response.status_code == 400
    assert stored_keys(s3) == []


def test_a_large_recording_is_converted_while_it_is_stored(api, s3):
    body = audio("wav", 100.0)  # 3.2 MB: a temporary file
    created = upload(api, body, "memo.wav")
    assert created["variant_mime_type"] == "audio/ogg; codecs=opus"
    assert httpx.get(created["original_url"]).content == body
    assert len(stored_keys(s3)) == 2


def test_a_conversion_worker_killed_mid_job_refuses_that_upload_only(api, s3, voice_note, live):
    served = upload(api, voice_note, "served.ogg")
    pool.shutdown()
    outcome: dict[str, httpx.Response] = {}

    def long_upload() -> None:
        body = audio("wav", 600.0)  # ten minutes: seconds of work for a worker
        outcome["response"] = api.post(
            "/api/attachments/", files={"file": ("long.wav", body)}, timeout=120
        )

    thread = threading.Thread(target=long_upload)
    thread.start()
    deadline = time.monotonic() + 60
    while not ((current := pool.current()) and current.busy_pids()):
        assert time.monotonic() < deadline, "no conversion started"
        time.sleep(0.01)
    (victim,) = current.busy_pids()
    os.kill(victim, signal.SIGKILL)
    thread.join(120)
    response = outcome["response"]
    assert response.status_code == 400
    assert "converter crashed (exit -9)" in response.json()["error"]
    # The web process kept serving, nothing of the refused upload was kept, and the
    # next upload gets a fresh worker.
    assert httpx.get(served["short_url"]).content == voice_note
    assert MessageAttachment.objects.count() == 1
    assert len(stored_keys(s3)) == 1
    next_one = upload(api, audio("wav", 0.5), "next.wav")
    assert next_one["variant_mime_type"] == "audio/ogg; codecs=opus"


@pytest.mark.parametrize(("codec", "from_header"), [("libx264", True), ("mpeg4", False)])
def test_an_h264_mp4_is_recognised_from_its_headers(api, codec, from_header):
    created = upload(api, video_mp4(codec=codec), "clip.mp4")
    row = MessageAttachment.objects.get(pk=created["id"])
    assert row.media_info["video"] == ("h264" if from_header else "mpeg4")
    assert (row.media_info.get("from") == "header") is from_header
    assert created["variant_mime_type"] is None
