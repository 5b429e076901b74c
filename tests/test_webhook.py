"""POST /webhooks/evolution/: events stored and queued at once; a worker stores inbound
media once, with a short link, and applies receipts."""

from __future__ import annotations

import base64
import json

import httpx
import pytest

from tests.evolution_double import EvolutionDouble
from tests.media import pdf, png

SECRET = "hook-secret"
pytestmark = pytest.mark.usefixtures("tasks_worker")


def processed(response: httpx.Response, timeout: float = 20.0):
    """The stored event once the worker has processed it."""
    import time

    from chat.models import WebhookEvent

    assert response.status_code == 202, response.text
    event_id = response.json()["event_id"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        event = WebhookEvent.objects.get(pk=event_id)
        if event.state != WebhookEvent.State.PENDING:
            return event
        time.sleep(0.05)
    raise AssertionError(f"event {event_id} still pending after {timeout} s")


@pytest.fixture
def hook(live, settings):
    settings.EVOLUTION = {**settings.EVOLUTION, "WEBHOOK_SECRET": SECRET}

    def post(payload, *, secret: str | None = SECRET, raw: bytes | None = None) -> httpx.Response:
        headers = {"Content-Type": "application/json"}
        if secret is not None:
            headers["X-Webhook-Secret"] = secret
        body = raw if raw is not None else json.dumps(payload).encode()
        return httpx.post(f"{live.url}/webhooks/evolution/", content=body, headers=headers)

    return post


def upsert(message: dict, message_id: str = "3EB0AAAA1111", from_me: bool = False) -> dict:
    return {
        "event": "messages.upsert",
        "instance": "mc-test",
        "data": {
            "key": {
                "remoteJid": "5511988887777@s.whatsapp.net",
                "fromMe": from_me,
                "id": message_id,
            },
            "message": message,
            "messageType": next(iter(message)),
        },
        "date_time": "2026-11-25T03:00:00.000Z",
        "sender": "5511900000000@s.whatsapp.net",
    }


def test_media_with_base64_is_stored_once_and_served(hook, voice_note):
    from chat.models import Message, MessageAttachment

    payload = upsert(
        {"audioMessage": {"mimetype": "audio/ogg; codecs=opus", "ptt": True},
         "base64": base64.b64encode(voice_note).decode()}
    )  # fmt: skip
    first = hook(payload)
    assert first.json()["status"] == "queued"
    assert processed(first).state == "done"
    attachment = MessageAttachment.objects.get()
    assert attachment.mime_type == "audio/ogg"
    served = httpx.get(attachment.short_url)
    assert served.content == voice_note

    replay = hook(payload)
    assert replay.status_code == 200
    assert replay.json() == {"status": "duplicate", "event_id": first.json()["event_id"]}
    assert MessageAttachment.objects.count() == 1
    message = Message.objects.get()
    assert attachment.message_id == message.pk
    assert (message.direction, message.status, message.number) == (
        "in",
        "received",
        "5511988887777",
    )
    assert message.evolution_id == "3EB0AAAA1111"


def test_media_without_base64_is_fetched_from_evolution(hook, settings):
    from chat.models import MessageAttachment

    with EvolutionDouble(api_key="k", instance="mc-test") as double:
        settings.EVOLUTION = {**settings.EVOLUTION, "API_URL": double.url, "API_KEY": "k",
                              "INSTANCE": "mc-test"}  # fmt: skip
        double.media_by_id["3EB0DOC"] = {
            "mediaType": "documentMessage",
            "fileName": "contrato.pdf",
            "mimetype": "application/pdf",
            "base64": base64.b64encode(pdf()).decode(),
        }
        response = hook(upsert({"documentMessage": {"fileName": "contrato.pdf",
                                                    "caption": "assine"}}, "3EB0DOC"))  # fmt: skip
        assert processed(response).state == "done"
    attachment = MessageAttachment.objects.get()
    assert attachment.mime_type == "application/pdf"
    assert attachment.original_filename == "contrato.pdf"
    assert attachment.message.caption == "assine"


@pytest.mark.parametrize(
    "payload",
    [
        {"event": "connection.update", "data": {"state": "open"}},
        upsert({"conversation": "oi"}),
        upsert({"imageMessage": {}, "base64": base64.b64encode(png()).decode()}, from_me=True),
    ],
)
def test_other_events_are_acknowledged_and_ignored(hook, payload):
    from chat.models import MessageAttachment

    response = hook(payload)
    assert response.status_code == 200
    assert response.json() == {"status": "ignored"}
    assert not MessageAttachment.objects.exists()


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{not json", "not valid JSON"),
        (b"[]", "JSON object"),
        (json.dumps({"event": "messages.upsert", "data": "x"}).encode(), "'data'"),
        (json.dumps(upsert({"imageMessage": {}, "base64": "%%%not-base64"})).encode(), "base64"),
        (json.dumps({"event": "messages.upsert", "data": {"key": {}, "message": {}}}).encode(),
         "data.key.id"),
    ],
)  # fmt: skip
def test_malformed_payloads_are_400_with_a_reason(hook, raw, reason):
    from chat.models import MessageAttachment

    response = hook(None, raw=raw)
    assert response.status_code == 400
    assert reason in response.json()["error"]
    assert not MessageAttachment.objects.exists()


def test_wrong_or_missing_secret_is_401(hook, live):
    payload = upsert({"conversation": "x"})
    assert hook(payload, secret="nope").status_code == 401
    assert hook(payload, secret=None).status_code == 401
    in_path = httpx.post(f"{live.url}/webhooks/evolution/{SECRET}/", json=payload)
    assert in_path.status_code == 200


def test_media_over_the_limit_is_refused(hook, settings):
    from chat.models import MessageAttachment

    settings.MEDIACACHE = {**settings.MEDIACACHE, "MAX_UPLOAD_BYTES": 1000}
    big = base64.b64encode(b"\x00" * 5000).decode()
    response = hook(upsert({"documentMessage": {"fileName": "x.bin"}, "base64": big}))
    assert response.status_code == 400
    assert "over the limit" in response.json()["error"]
    assert not MessageAttachment.objects.exists()
