"""The send queue end to end: 202 and Location, Prefer: wait, idempotency, retries that
cannot double a message, ``unknown`` and its confirmed re-send, and delivery receipts
from the Evolution double's ``messages.update`` webhooks. Real worker (django-tasks-db's,
in a thread), real PostgreSQL, the double over HTTP."""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
import pytest

from tests.conftest import upload

NUMBER = "5511999990000"
SECRET = "hook-secret"
WAIT = {"Prefer": "wait=20"}


def wait_for(predicate, timeout: float = 20.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"{what} not reached in {timeout} s")


def message_row(message_id: int):
    from chat.models import Message

    return Message.objects.get(pk=message_id)


def post(api: httpx.Client, attachment_id: int, headers: dict | None = None, **extra):
    return api.post(
        "/api/messages/",
        json={"number": NUMBER, "attachment_id": attachment_id, **extra},
        headers=headers or {},
    )


@pytest.fixture
def receipts(live, settings, evolution):
    """The double posts receipts to our webhook, as Evolution does."""
    settings.EVOLUTION = {**settings.EVOLUTION, "WEBHOOK_SECRET": SECRET}
    evolution.webhook_url = f"{live.url}/webhooks/evolution/"
    evolution.webhook_headers = {"X-Webhook-Secret": SECRET}
    return evolution


def test_a_send_is_accepted_at_once_and_a_worker_sends_it(api, evolution, voice_note, live):
    from tests.tasks_worker import ThreadWorker

    created = upload(api, voice_note, "voice.ogg")
    response = post(api, created["id"])
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["status"] == "queued"
    assert response.headers["Location"] == f"{live.url}/api/messages/{body['id']}"
    assert evolution.requests_received == 0  # nothing sent in the request

    with ThreadWorker():
        sent = wait_for(
            lambda: api.get(response.headers["Location"]).json()["status"] == "sent",
            what="sent",
        )
    assert sent
    progress = api.get(response.headers["Location"]).json()
    assert progress["evolution_id"] == evolution.sent[0]["message_id"]
    assert progress["attempts"] == 1
    assert evolution.processed_sends == 1


def test_prefer_wait_gives_the_outcome_and_says_so(tasks_worker, api, evolution, voice_note):
    created = upload(api, voice_note, "voice.ogg")
    response = post(api, created["id"], headers={"Prefer": "wait=15"})
    assert response.status_code == 201, response.text
    assert response.headers["Preference-Applied"] == "wait=15"
    assert response.json()["status"] == "sent"


def test_prefer_wait_past_the_outcome_time_answers_202(api, evolution, voice_note):
    created = upload(api, voice_note, "voice.ogg")  # no worker: it stays queued
    started = time.monotonic()
    response = post(api, created["id"], headers={"Prefer": "respond-async, wait=1"})
    assert response.status_code == 202
    assert response.json()["status"] == "queued"
    assert time.monotonic() - started >= 1.0
    capped = post(api, upload(api, voice_note, "v.ogg")["id"], headers={"Prefer": "wait=0"})
    assert capped.headers["Preference-Applied"] == "wait=0"


def test_same_idempotency_key_same_message_one_send(tasks_worker, api, evolution, voice_note):
    created = upload(api, voice_note, "voice.ogg")
    key = {"Idempotency-Key": "order-42-voice"}
    first = post(api, created["id"], headers={**key, **WAIT})
    assert first.status_code == 201, first.text
    again = post(api, created["id"], headers={**key, **WAIT})
    assert again.status_code == 201
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert evolution.processed_sends == 1


def test_same_key_with_another_body_is_422_and_sends_nothing_new(
    tasks_worker, api, evolution, voice_note
):
    created = upload(api, voice_note, "voice.ogg")
    key = {"Idempotency-Key": "k-1"}
    assert post(api, created["id"], headers={**key, **WAIT}).status_code == 201
    other = post(api, created["id"], headers=key, caption="different")
    assert other.status_code == 422
    assert "different request" in other.json()["error"]
    assert evolution.processed_sends == 1


def test_concurrent_retries_with_one_key_make_one_message(api, evolution, voice_note):
    """Five clients' retries at once, before any worker runs: one row, one send."""
    from chat.models import Message
    from tests.tasks_worker import ThreadWorker

    created = upload(api, voice_note, "voice.ogg")
    answers: list[httpx.Response] = []

    def retry() -> None:
        answers.append(post(api, created["id"], headers={"Idempotency-Key": "same"}))

    threads = [threading.Thread(target=retry) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert {a.status_code for a in answers} <= {200, 202}, [a.text for a in answers]
    assert len({a.json()["id"] for a in answers}) == 1
    assert Message.objects.count() == 1
    with ThreadWorker():
        wait_for(lambda: message_row(answers[0].json()["id"]).status == "sent", what="sent")
    assert evolution.processed_sends == 1


def test_two_sends_of_one_attachment_without_keys_send_once(api, evolution, voice_note):
    """Two concurrent POSTs for one attachment: one message (202), the other 409."""
    created = upload(api, voice_note, "voice.ogg")
    answers: list[httpx.Response] = []
    threads = [
        threading.Thread(target=lambda: answers.append(post(api, created["id"]))) for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(a.status_code for a in answers) == [202, 409], [a.text for a in answers]


def test_client_ref_is_the_key_for_form_posts(tasks_worker, api, evolution, voice_note):
    def form_send() -> httpx.Response:
        return api.post(
            "/api/messages/",
            data={"number": NUMBER, "client_ref": "form-7"},
            files={"file": ("v.ogg", voice_note)},
            headers=WAIT,
        )

    first, second = form_send(), form_send()
    assert first.status_code == 201, first.text
    assert second.json()["id"] == first.json()["id"]
    assert evolution.processed_sends == 1
    from chat.models import MessageAttachment

    assert MessageAttachment.objects.count() == 1  # the retry stored no second upload


def test_a_bad_idempotency_key_is_400(api, evolution, voice_note):
    created = upload(api, voice_note, "voice.ogg")
    assert post(api, created["id"], headers={"Idempotency-Key": "x" * 300}).status_code == 400


def test_safe_failures_are_retried_until_evolution_is_back(
    tasks_worker, api, evolution, settings, voice_note
):
    """Connection refused: queued again with backoff; sent once Evolution answers."""
    settings.MESSAGE_DELIVERY = {**settings.MESSAGE_DELIVERY, "SEND_DEADLINE": 60.0}
    settings.EVOLUTION = {**settings.EVOLUTION, "MAX_RETRIES": 0}
    created = upload(api, voice_note, "voice.ogg")
    evolution.down()
    message_id = post(api, created["id"]).json()["id"]
    retried = wait_for(
        lambda: (m := message_row(message_id)).attempts >= 2 and m.status == "queued" and m,
        what="two attempts",
    )
    assert retried.next_attempt_at is not None
    assert retried.error.startswith("EvolutionUnavailable: ")
    evolution.up()
    wait_for(lambda: message_row(message_id).status == "sent", what="sent")
    assert evolution.processed_sends == 1


def test_instance_not_connected_is_retried_and_sent_when_it_connects(
    tasks_worker, api, evolution, settings, voice_note
):
    settings.MESSAGE_DELIVERY = {**settings.MESSAGE_DELIVERY, "SEND_DEADLINE": 60.0}
    created = upload(api, voice_note, "voice.ogg")
    evolution.instance_state = "close"
    message_id = post(api, created["id"]).json()["id"]
    wait_for(lambda: message_row(message_id).attempts >= 2, what="a retry")
    assert evolution.processed_sends == 0
    evolution.instance_state = "open"
    wait_for(lambda: message_row(message_id).status == "sent", what="sent")
    assert evolution.processed_sends == 1


def test_a_read_timeout_is_unknown_and_resend_asks_for_confirmation(
    tasks_worker, api, evolution, settings, voice_note
):
    settings.EVOLUTION = {**settings.EVOLUTION, "READ_TIMEOUT": 0.5}
    created = upload(api, voice_note, "voice.ogg")
    evolution.delay_next(2.0)
    response = post(api, created["id"], headers=WAIT)
    assert response.status_code == 502
    assert response.json()["status"] == "unknown"
    assert evolution.processed_sends == 1  # it was sent: never retried on its own
    message_id = response.json()["id"]
    refused = api.post(f"/api/messages/{message_id}/resend")
    assert refused.status_code == 409
    assert "confirm" in refused.json()["error"]
    confirmed = api.post(f"/api/messages/{message_id}/resend", json={"confirm": True}, headers=WAIT)
    assert confirmed.status_code == 201, confirmed.text
    assert evolution.processed_sends == 2  # the operator chose to


def test_receipts_follow_a_send_and_never_go_backwards(tasks_worker, api, receipts, voice_note):
    receipts.auto_receipts = ("SERVER_ACK", "DELIVERY_ACK")
    created = upload(api, voice_note, "voice.ogg")
    sent = post(api, created["id"], headers=WAIT).json()
    evolution_id = sent["evolution_id"]
    wait_for(lambda: message_row(sent["id"]).delivery_status == "delivery_ack", what="delivered")
    assert receipts.send_receipt(evolution_id, "PLAYED") == 202
    assert receipts.send_receipt(evolution_id, "READ") == 202  # late, after PLAYED
    wait_for(lambda: message_row(sent["id"]).read_at is not None, what="read receipt")
    message = message_row(sent["id"])
    assert message.delivery_status == "played"
    assert message.server_ack_at <= message.delivered_at
    assert message.played_at is not None
    # The same receipt again is one event, processed once.
    assert receipts.send_receipt(evolution_id, "READ") == 200
    shown = api.get(f"/api/messages/{sent['id']}").json()
    assert shown["delivery_status"] == "played"
    assert all(shown[step] for step in ("read_at", "delivered_at", "server_ack_at"))


def test_a_receipt_before_the_worker_recorded_the_id_is_applied_after(
    tasks_worker, api, receipts, voice_note
):
    from chat.models import DeliveryReceipt
    from chat.receipts import parse_receipt, store_receipt

    # Evolution's READ arrives for an id no message has yet (the 201 is still on its way).
    store_receipt(parse_receipt(receipts.receipt_event("3EB0EARLY", "READ", "x")))
    assert DeliveryReceipt.objects.filter(evolution_id="3EB0EARLY").exists()
    from chat.delivery import _record_sent

    receipts.auto_receipts = ()
    created = upload(api, voice_note, "voice.ogg")
    queued = post(api, created["id"], headers=WAIT).json()
    _record_sent(message_row(queued["id"]), "3EB0EARLY")
    assert message_row(queued["id"]).delivery_status == "read"


def test_receipts_for_messages_we_did_not_send_are_kept_harmlessly(receipts, live):
    response = httpx.post(
        f"{live.url}/webhooks/evolution/",
        json=receipts.receipt_event("3EB0NOTOURS", "DELIVERY_ACK", "x@s.whatsapp.net"),
        headers={"X-Webhook-Secret": SECRET},
    )
    assert response.status_code == 202
