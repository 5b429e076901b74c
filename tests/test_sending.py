"""Sending through Evolution API end to end: our service, the Evolution double and S3,
all over real HTTP. The double checks the URL like Evolution, appends ``timestamp``
for voice notes and really downloads what it is given."""

from __future__ import annotations

import boto3
import httpx
import pytest
from botocore.config import Config

from evolution import EvolutionDownloadError
from tests.conftest import BUCKET, S3_KEY_ID, S3_SECRET, upload
from tests.media import mp4, pdf, png
from tests.media_gen import image
from tests.s3_signature_gate import S3SignatureGate

NUMBER = "5511999990000"


pytestmark = pytest.mark.usefixtures("tasks_worker")
WAIT = {"Prefer": "wait=20"}


def send(api: httpx.Client, attachment_id: int, **extra) -> httpx.Response:
    """Queue a send and wait for its outcome (201 sent, 502 failed or unknown)."""
    return api.post(
        "/api/messages/",
        json={"number": NUMBER, "attachment_id": attachment_id, **extra},
        headers=WAIT,
    )


def resend(api: httpx.Client, message_id: int, **body) -> httpx.Response:
    return api.post(f"/api/messages/{message_id}/resend", json=body or None, headers=WAIT)


def test_voice_note_goes_as_ptt_with_the_short_link_and_is_a_cache_hit(api, evolution, voice_note):
    from chat.models import Message

    created = upload(api, voice_note, "voice.ogg")
    response = send(api, created["id"])
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["status"] == "sent"

    (call,) = evolution.sent
    assert call["endpoint"] == "sendWhatsAppAudio"
    assert call["json"]["audio"] == created["short_url"]
    assert call["json"]["encoding"] is False  # the variant is already Ogg Opus: no ffmpeg
    assert call["download_url"] == created["short_url"]  # so no ?timestamp= either
    assert call["download_status"] == 200
    assert call["download_bytes"] == voice_note
    assert call["download_headers"]["X-Cache"] == "HIT"  # warmed before the call

    message = Message.objects.get(pk=body["id"])
    assert message.status == "sent"
    assert message.evolution_id == call["message_id"] == body["evolution_id"]
    assert message.attachments.get().pk == created["id"]


@pytest.mark.parametrize(
    ("body", "name", "mediatype", "file_name", "mimetype"),
    [
        # Evolution re-encodes every image to JPEG and labels it by fileName: .jpg
        (png(), "photo.png", "image", "photo.jpg", "image/jpeg"),
        (mp4(), "clip", "video", "clip.mp4", "video/mp4"),
        (pdf(), "Relatório final", "document", "Relatório final.pdf", "application/pdf"),
    ],
)
def test_media_goes_through_send_media_with_a_file_name_extension(
    api, evolution, body, name, mediatype, file_name, mimetype
):
    created = upload(api, body, name)
    response = send(api, created["id"], caption="see this")
    assert response.status_code == 201, response.text
    (call,) = evolution.sent
    assert call["endpoint"] == "sendMedia"
    assert call["json"]["media"] == created["short_url"]
    assert call["json"]["mediatype"] == mediatype
    assert call["json"]["mimetype"] == mimetype
    assert call["json"]["fileName"] == file_name
    assert call["json"]["caption"] == "see this"
    assert call["download_bytes"] == body
    assert call["download_headers"]["X-Cache"] == "HIT"
    assert evolution.delivered[0]["mimetype"] == mimetype  # the label WhatsApp gets


@pytest.mark.parametrize(
    ("body", "name"),
    [(png(), "photo.png"), (image("WEBP"), "photo.webp"), (image("PNG", (40, 30)), "draw.PNG")],
)
def test_images_arrive_labelled_as_the_jpeg_evolution_makes_of_them(api, evolution, body, name):
    """Trap 7: sharp turns every image into JPEG, the label comes from fileName; sent as
    ``*.png``/``image/png`` WhatsApp would get JPEG bytes labelled image/png."""
    created = upload(api, body, name)
    assert send(api, created["id"]).status_code == 201
    (delivered,) = evolution.delivered
    assert delivered["content_type"] == "image/jpeg"
    assert delivered["mimetype"] == "image/jpeg"
    assert delivered["file_name"].endswith(".jpg")


def test_an_image_sent_as_a_document_keeps_its_own_type(api, evolution):
    created = upload(api, png(), "photo.png")
    assert send(api, created["id"], as_document=True).status_code == 201
    (call,) = evolution.sent
    assert (call["json"]["fileName"], call["json"]["mimetype"]) == ("photo.png", "image/png")
    assert evolution.delivered == [
        {"mimetype": "image/png", "content_type": None, "file_name": "photo.png"}
    ]


def test_multipart_send_uploads_and_sends_in_one_call(api, evolution, voice_note):
    response = api.post(
        "/api/messages/",
        data={"number": "+55 (11) 99999-0000"},
        headers=WAIT,
        files={"file": ("v.ogg", voice_note)},
    )
    assert response.status_code == 201, response.text
    assert response.json()["number"] == NUMBER
    assert evolution.sent[0]["download_bytes"] == voice_note


def test_presigned_url_breaks_and_the_short_link_works(api, evolution, voice_note, s3_server):
    """The bug this project exists for: a SigV4 presigned URL dies when Evolution
    appends ``timestamp``; the short link does not. (moto does not verify presigned
    URLs, so S3's signature check runs in a gate in front of it.)"""
    from chat.gateway import evolution_client
    from chat.models import MessageAttachment

    created = upload(api, voice_note, "voice.ogg")
    key = MessageAttachment.objects.get(pk=created["id"]).file.name
    with S3SignatureGate(s3_server.url, {S3_KEY_ID: S3_SECRET}) as gate:
        presigned = boto3.client(
            "s3",
            endpoint_url=gate.url,
            aws_access_key_id=S3_KEY_ID,
            aws_secret_access_key=S3_SECRET,
            region_name="us-east-1",
            config=Config(signature_version="s3v4"),
        ).generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": key})
        assert httpx.get(presigned).content == voice_note  # the URL itself is fine ...
        assert httpx.get(presigned + "&timestamp=1").status_code == 403
        with evolution_client() as client, pytest.raises(EvolutionDownloadError) as failure:
            client.send_audio(NUMBER, presigned)  # ... until Evolution appends ?timestamp=
    assert failure.value.status_code == 403
    assert evolution.calls[-1]["download_status"] == 403
    assert evolution.processed_sends == 0

    with evolution_client() as client:
        result = client.send_audio(NUMBER, created["short_url"])
    assert result.message_id
    assert evolution.calls[-1]["download_bytes"] == voice_note


def test_evolution_down_marks_failed_and_resend_sends_once(api, evolution, voice_note):
    created = upload(api, voice_note, "voice.ogg")
    evolution.down()
    response = send(api, created["id"])
    assert response.status_code == 502
    failed = response.json()
    assert failed["status"] == "failed"
    assert failed["error"].startswith("EvolutionUnavailable: ")
    assert "Action: Check that Evolution API is running" in failed["error"]

    evolution.up()
    resent = resend(api, failed["id"])
    assert resent.status_code == 201, resent.text
    assert resent.json()["attempts"] == 2
    assert evolution.processed_sends == 1
    assert resend(api, failed["id"]).status_code == 409


@pytest.mark.parametrize(("state", "name"), [("close", "photo.png"), (None, "voice.ogg")])
def test_instance_not_connected_is_named_with_the_action(api, evolution, voice_note, state, name):
    """Evolution answers 500 "Connection Closed" (or, with no session, a TypeError about
    'onWhatsApp'): the instance, not the media, and the record says so."""
    from chat.models import Message

    created = upload(api, png() if name.endswith(".png") else voice_note, name)
    evolution.instance_state = state
    response = send(api, created["id"])
    assert response.status_code == 502
    error = response.json()["error"]
    assert error.startswith("EvolutionInstanceNotConnected: Evolution instance 'mc-test' is not")
    assert "Action: Connect the instance to WhatsApp" in error
    assert "/instance/connect/mc-test" in error
    assert "Download" not in error
    assert Message.objects.get(pk=response.json()["id"]).error == error
    assert evolution.processed_sends == 0

    evolution.instance_state = "open"
    resent = resend(api, response.json()["id"])
    assert resent.status_code == 201, resent.text
    assert resent.json()["error"] == ""


def test_unknown_instance_is_named_with_the_action(api, evolution, settings, voice_note):
    settings.EVOLUTION = {**settings.EVOLUTION, "INSTANCE": "typo"}
    created = upload(api, voice_note, "voice.ogg")
    response = send(api, created["id"])
    assert response.status_code == 502
    error = response.json()["error"]
    assert error.startswith("EvolutionInstanceNotFound: Evolution has no instance 'typo'")
    assert "Action: Set EVOLUTION_INSTANCE" in error


def test_a_dead_media_link_is_a_download_error_with_the_action(api, evolution, voice_note):
    from chat.models import MessageAttachment

    created = upload(api, voice_note, "voice.ogg")
    dead = "http://127.0.0.1:9/media/gone.ogg"  # nothing listens on port 9
    MessageAttachment.objects.filter(pk=created["id"]).update(short_url=dead)
    response = send(api, created["id"])
    assert response.status_code == 502
    error = response.json()["error"]
    assert error.startswith("EvolutionDownloadError: ")
    assert "Action: Open the media link from Evolution's host" in error


def test_a_read_timeout_says_the_message_may_have_gone_out(api, evolution, settings, voice_note):
    settings.EVOLUTION = {**settings.EVOLUTION, "READ_TIMEOUT": 0.5}
    created = upload(api, voice_note, "voice.ogg")
    evolution.delay_next(3.0)
    response = send(api, created["id"])
    assert response.status_code == 502
    error = response.json()["error"]
    assert error.startswith("EvolutionUnavailable: Evolution API did not answer in time")
    assert "Action: The message may have gone out: check the chat in WhatsApp" in error
    assert evolution.processed_sends == 1  # it did: the action keeps a re-send from doubling it


def test_a_long_gateway_answer_keeps_the_action_on_the_record(api, evolution, voice_note):
    created = upload(api, voice_note, "voice.ogg")
    evolution.fail_next(500, body="x" * 5000)
    error = send(api, created["id"]).json()["error"]
    assert len(error) <= 2000
    assert error.startswith("EvolutionServerError: Evolution API error 500: xxx")
    assert error.endswith(
        "Action: Read Evolution API's log at this time for the cause, then re-send."
    )


def test_gateway_503s_are_retried_without_duplicate_sends(api, evolution, voice_note):
    created = upload(api, voice_note, "voice.ogg")
    evolution.fail_next(503, times=2)
    response = send(api, created["id"])
    assert response.status_code == 201, response.text
    assert evolution.requests_received == 3
    assert evolution.processed_sends == 1


def test_server_error_is_not_retried(api, evolution, voice_note):
    created = upload(api, voice_note, "voice.ogg")
    evolution.fail_next(500)
    response = send(api, created["id"])
    assert response.status_code == 502
    assert response.json()["error"].startswith("EvolutionServerError: ")
    assert evolution.requests_received == 1


def test_wrong_evolution_key_is_a_clear_error(api, evolution, settings, voice_note):
    settings.EVOLUTION = {**settings.EVOLUTION, "API_KEY": "wrong"}
    created = upload(api, voice_note, "voice.ogg")
    response = send(api, created["id"])
    assert response.status_code == 502
    assert response.json()["error"].startswith("EvolutionAuthError: ")
    assert "Action: Set EVOLUTION_API_KEY" in response.json()["error"]
    assert "wrong" not in response.json()["error"]  # the key is never echoed


def test_bad_requests(api, evolution, voice_note):
    created = upload(api, voice_note, "voice.ogg")
    assert send(api, created["id"] + 1000).status_code == 404
    bad_number = api.post("/api/messages/", json={"number": "abc", "attachment_id": created["id"]})
    assert bad_number.status_code == 400
    assert "number" in bad_number.json()["error"]
    assert api.post("/api/messages/", json={"number": NUMBER}).status_code == 400
    not_json = api.post(
        "/api/messages/", content=b"{", headers={"Content-Type": "application/json"}
    )
    assert not_json.status_code == 400
    assert evolution.requests_received == 0


def test_gateway_not_configured_is_503(api, settings, voice_note):
    settings.EVOLUTION = {**settings.EVOLUTION, "API_URL": ""}
    from chat.models import Message

    created = upload(api, voice_note, "voice.ogg")
    response = send(api, created["id"])
    assert response.status_code == 503
    assert "not configured" in response.json()["error"]
    assert not Message.objects.exists()


def test_sends_are_counted_by_result_in_prometheus_and_the_series(api, evolution, voice_note):
    from prometheus_client import REGISTRY

    from mediacache.engine import get_engine
    from mediacache.observability.flusher import flush_now

    def sends(result: str) -> float:
        labels = {"result": result}
        return REGISTRY.get_sample_value("mediacache_evolution_sends_total", labels) or 0.0

    engine = get_engine()
    flush_now(engine)
    before = engine.series.window(2).total("evo:sent"), sends("sent"), sends("failed")
    created = upload(api, voice_note, "voice.ogg")
    evolution.fail_next(500)
    failed = send(api, created["id"])
    assert failed.status_code == 502
    assert failed.json()["status"] == "unknown"  # a 500 may have sent it: confirm to re-send
    assert resend(api, failed.json()["id"]).status_code == 409
    assert resend(api, failed.json()["id"], confirm=True).status_code == 201
    flush_now(engine)
    assert sends("sent") == before[1] + 1
    assert sends("failed") == before[2] + 1
    assert engine.series.window(2).total("evo:sent") >= before[0] + 1
