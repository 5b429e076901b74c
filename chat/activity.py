"""What /ops/ shows of the send queue: messages and webhook events of the last hour by
status, and the ones that need an operator (``unknown``, ``failed``). Two grouped queries;
the page must load while sends are failing, so nothing here calls Evolution."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.db.models import Count
from django.utils import timezone

from .models import Message, WebhookEvent

SEND_STATUSES = ("queued", "sending", "sent", "failed", "unknown")
DELIVERY_STEPS = ("server_ack", "delivery_ack", "read", "played", "error")
ATTENTION = 10  # messages listed that need a look


@dataclass(frozen=True)
class Activity:
    statuses: dict[str, int]  # outbound messages queued in the last hour, by send status
    deliveries: dict[str, int]  # the same messages by delivery receipt
    events: dict[str, int]  # webhook events received in the last hour, by state
    attention: list[Message]  # recent unknown and failed outbound messages


def last_hour(now=None) -> Activity:
    since = (now or timezone.now()) - timedelta(hours=1)
    outbound = Message.objects.filter(direction=Message.Direction.OUTBOUND, created_at__gte=since)
    rows = outbound.values_list("status", "delivery_status").annotate(n=Count("pk"))
    statuses = dict.fromkeys(SEND_STATUSES, 0)
    deliveries = dict.fromkeys(DELIVERY_STEPS, 0)
    for status, delivery, n in rows:
        statuses[status] = statuses.get(status, 0) + n
        if delivery:
            deliveries[delivery] = deliveries.get(delivery, 0) + n
    events = dict.fromkeys(("pending", "done", "failed"), 0)
    for state, n in (
        WebhookEvent.objects.filter(received_at__gte=since)
        .values_list("state")
        .annotate(n=Count("pk"))
    ):
        events[state] = n
    attention = list(
        Message.objects.filter(
            direction=Message.Direction.OUTBOUND,
            status__in=[Message.Status.UNKNOWN, Message.Status.FAILED],
        ).order_by("-updated_at")[:ATTENTION]
    )
    return Activity(statuses, deliveries, events, attention)
