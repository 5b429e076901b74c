"""The admin and /ops/ over the send queue: bulk re-send enqueues (one request never
sends N messages), an ``unknown`` re-send asks first, /ops/ counts the last hour."""

from __future__ import annotations

import pytest
from django.test import Client


@pytest.fixture
def admin(transactional_db, django_user_model) -> Client:
    user = django_user_model.objects.create_superuser("root", "root@example.com", "pw")
    client = Client()
    client.force_login(user)
    return client


def outbound(status: str, number: str = "5511999990000", **fields):
    from chat.models import Message

    return Message.objects.create(direction="out", number=number, status=status, **fields)


def queued_task_args() -> list[list]:
    from django_tasks_db.models import DBTaskResult

    return [
        r.args_kwargs["args"]
        for r in DBTaskResult.objects.filter(task_path="chat.tasks.send_message")
    ]


def test_bulk_resend_enqueues_and_sends_nothing_itself(admin):
    failed = [outbound("failed", error="EvolutionUnavailable: down") for _ in range(3)]
    sent = outbound("sent")
    response = admin.post(
        "/admin/chat/message/",
        {"action": "resend_failed", "_selected_action": [m.pk for m in [*failed, sent]]},
        follow=True,
    )
    assert response.status_code == 200
    assert "Queued 3 message(s) for re-sending; 1 skipped" in response.content.decode()
    for message in failed:
        message.refresh_from_db()
        assert message.status == "queued"
    assert sorted(queued_task_args()) == sorted([[m.pk] for m in failed])


def test_resending_unknown_messages_asks_first(admin):
    unknown = outbound("unknown", error="EvolutionUnavailable: read timeout")
    asked = admin.post(
        "/admin/chat/message/", {"action": "resend_unknown", "_selected_action": [unknown.pk]}
    )
    page = asked.content.decode()
    assert asked.status_code == 200
    assert "may already have been delivered" in page
    assert f"#{unknown.pk} to {unknown.number}" in page
    unknown.refresh_from_db()
    assert unknown.status == "unknown"
    assert queued_task_args() == []

    admin.post(
        "/admin/chat/message/",
        {"action": "resend_unknown", "_selected_action": [unknown.pk], "confirm": "yes"},
    )
    unknown.refresh_from_db()
    assert unknown.status == "queued"
    assert queued_task_args() == [[unknown.pk]]


def test_ops_counts_the_last_hour_and_lists_what_needs_a_look(admin, redis_client):
    from chat.models import WebhookEvent

    for status in ("sent", "sent", "queued", "unknown", "failed"):
        outbound(status, delivery_status="read" if status == "sent" else "")
    WebhookEvent.objects.create(dedupe_key="update:x:read", event="messages.update", payload={})
    page = admin.get("/ops/").content.decode()
    assert 'data-status="sent">sent <strong>2</strong>' in page
    assert 'data-status="unknown">unknown <strong>1</strong>' in page
    assert 'data-delivery="read">read <strong>2</strong>' in page
    assert 'data-event="pending">pending <strong>1</strong>' in page
    assert page.count("<li data-message=") == 2  # the unknown and the failed one
