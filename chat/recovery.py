"""Taking back what a dead worker or a lost enqueue left behind. Runs in every worker at
start and every WORKER_RECOVERY_INTERVAL seconds (``manage.py run_worker``).

* ``sending`` past its lease: the worker died (SIGKILL, OOM, a node lost). If it had not
  started the request (``request_started_at`` unset) nothing went out: ``queued`` again.
  If it had, the message may have gone out: ``unknown``, never re-sent on its own.
* ``queued`` and due for longer than a grace period, or a webhook event still pending:
  its task was lost (the queue was down at enqueue time, or a worker died holding the
  job): enqueued again; the task's claim makes a duplicate harmless.
* a large voice note whose variant is still pending after the grace period: its task was
  lost too; enqueued again (the row is updated only while it has no variant).
* a voice note stored as is from its headers whose waveform is still missing after the
  grace period, and never failed (a failure is noted in ``media_info``): its
  ``fill_waveform`` was lost; enqueued again (the row is updated only while it has none).
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.db.models import Q
from django.utils import timezone

from .models import Message, MessageAttachment, WebhookEvent

logger = logging.getLogger("chat")

GRACE = timedelta(seconds=60)
# The media_info key where a waveform that could not be made says why (chat.services).
WAVEFORM_ERROR = "waveform_error"  # a task normally starts well within this
UNKNOWN_AFTER_CRASH = (
    "The worker stopped while the request to Evolution was in flight: the message may "
    "have been sent. Action: check the chat in WhatsApp before re-sending."
)


def recover(now=None) -> dict[str, int]:
    from .tasks import (
        build_variant,
        enqueue_after_commit,
        enqueue_event,
        enqueue_send,
        fill_waveform,
    )

    now = now or timezone.now()
    stalled = Message.objects.filter(
        direction=Message.Direction.OUTBOUND,
        status=Message.Status.SENDING,
        lease_expires_at__lt=now,
    )
    never_started = list(
        stalled.filter(request_started_at__isnull=True).values_list("pk", flat=True)
    )
    requeued = stalled.filter(pk__in=never_started).update(
        status=Message.Status.QUEUED, lease_expires_at=None, next_attempt_at=now, updated_at=now
    )
    unknown = stalled.filter(request_started_at__isnull=False).update(
        status=Message.Status.UNKNOWN,
        error=UNKNOWN_AFTER_CRASH,
        lease_expires_at=None,
        updated_at=now,
    )
    due = (
        Message.objects.filter(
            direction=Message.Direction.OUTBOUND,
            status=Message.Status.QUEUED,
            updated_at__lt=now - GRACE,
        )
        .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lt=now - GRACE))
        .values_list("pk", flat=True)
    )
    resent = list(due) + never_started
    for message_id in resent:
        enqueue_send(message_id)
    events = list(
        WebhookEvent.objects.filter(state=WebhookEvent.State.PENDING, received_at__lt=now - GRACE)
        .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lt=now - GRACE))
        .values_list("pk", flat=True)
    )
    for event_id in events:
        enqueue_event(event_id)
    variants = list(
        MessageAttachment.objects.filter(
            variant_pending=True, created_at__lt=now - GRACE
        ).values_list("pk", flat=True)[:100]
    )
    for attachment_id in variants:
        enqueue_after_commit(build_variant, attachment_id)
    waveforms = list(
        MessageAttachment.objects.filter(
            waveform__isnull=True,
            media_info__from="header",
            media_info__format="ogg",
            created_at__lt=now - GRACE,
        )
        .exclude(media_info__has_key=WAVEFORM_ERROR)
        .values_list("pk", flat=True)[:100]
    )
    for attachment_id in waveforms:
        enqueue_after_commit(fill_waveform, attachment_id)
    counts = {
        "requeued": requeued,
        "unknown": unknown,
        "reenqueued": len(resent),
        "events_reenqueued": len(events),
        "variants_reenqueued": len(variants),
        "waveforms_reenqueued": len(waveforms),
    }
    if any(counts.values()):
        logger.warning("[CHAT] recovery: %s", counts)
    return counts
