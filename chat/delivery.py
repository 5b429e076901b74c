"""Sending one queued message, run by a worker: claim it, send it, record what happened.

Never twice: a worker first *claims* the row with one conditional UPDATE (``queued`` and
due → ``sending``, with a lease), so two workers, a retry and a re-delivered task cannot
both send it. Just before the request is written it records ``request_started_at``: a
worker that dies before that point certainly sent nothing (chat.recovery queues the
message again), after it the message may be out (``unknown``).

The outcome of a failed request decides the rest (:func:`outcome_of`):

* ``retry``: the request provably did not reach WhatsApp (connection refused, connect
  timeout, a 502/503/504 from a proxy, the instance not connected): ``queued`` again at
  ``next_attempt_at`` (chat.retry), until the message's ``send_deadline``, then ``failed``;
* ``unknown``: it may have been sent (read timeout, a dropped connection, an unexplained
  500): never retried; the admin and /ops/ show it with a re-send that asks first;
* ``failed``: Evolution refused it for a reason a retry does not change (auth, validation,
  the media download): the error says what to fix.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Literal

from django.conf import settings
from django.db.models import F, Q
from django.utils import timezone

from evolution import (
    EvolutionError,
    EvolutionInstanceNotConnected,
    EvolutionServerError,
    EvolutionUnavailable,
)
from mediacache.whatsapp import NotSendable, send_via_evolution

from .gateway import GatewayNotConfigured, shared_evolution_client
from .models import Message
from .retry import RetryPolicy

logger = logging.getLogger("chat")

Outcome = Literal["retry", "unknown", "failed"]
ERROR_LIMIT = 2000  # of the text kept on a failed message; the action always fits


def outcome_of(exc: EvolutionError) -> Outcome:
    """What a failed send means for the message (the module docstring's three cases)."""
    if isinstance(exc, EvolutionInstanceNotConnected):
        return "retry"  # Evolution refused before handing anything to WhatsApp
    if exc.maybe_sent:
        return "unknown"
    if isinstance(exc, EvolutionUnavailable):
        return "retry"  # connection refused, connect timeout, 502/503/504
    if isinstance(exc, EvolutionServerError) and (exc.status_code or 0) >= 500:
        return "unknown"  # it reached Evolution, which failed somewhere we cannot see
    return "failed"


def policy() -> RetryPolicy:
    config = settings.MESSAGE_DELIVERY
    return RetryPolicy(base=config["RETRY_BASE"], cap=config["RETRY_MAX"])


def lease_seconds() -> float:
    """How long a claim lasts: longer than any request the client can make."""
    evolution = settings.EVOLUTION
    return (
        float(evolution["CONNECT_TIMEOUT"])
        + float(evolution["READ_TIMEOUT"])
        + float(settings.MESSAGE_DELIVERY["LEASE_MARGIN"])
    )


# RQ's scheduler keeps run_after in whole seconds and may start a retry up to a second
# early: a retry that early is still due.
EARLY = timedelta(seconds=1.5)


def claim(message_id: int) -> Message | None:
    """Take a due ``queued`` message for this worker, or None (someone else has it, or
    it is not due, or it is already final): the one place that makes sends exclusive."""
    now = timezone.now()
    claimed = (
        Message.objects.filter(
            pk=message_id, direction=Message.Direction.OUTBOUND, status=Message.Status.QUEUED
        )
        .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now + EARLY))
        .update(
            status=Message.Status.SENDING,
            lease_expires_at=now + timedelta(seconds=lease_seconds()),
            request_started_at=None,
            attempts=F("attempts") + 1,
            updated_at=now,
        )
    )
    return Message.objects.get(pk=message_id) if claimed else None


def deliver(message_id: int) -> str:
    """Send message ``message_id`` if it is due and unclaimed; returns what happened
    (``sent``, ``queued`` for a retry, ``failed``, ``unknown``, or ``skipped``)."""
    message = claim(message_id)
    if message is None:
        return _not_claimed(message_id)
    attachment = message.attachments.first()
    if attachment is None:
        return _finish(message, Message.Status.FAILED, "the message has no attachment")
    if attachment.variant_pending:
        return _wait_for_variant(message)
    try:
        client = shared_evolution_client()
    except GatewayNotConfigured as exc:
        return _retry_or_fail(message, str(exc))
    # From here on Evolution may receive the request.
    _mark_request_started(message)
    try:
        result = send_via_evolution(
            client,
            message.number,
            attachment,
            caption=message.caption or None,
            as_document=message.send_as_document,
            audio_encoding=settings.EVOLUTION.get("AUDIO_ENCODING") or None,
        )
    except NotSendable as exc:  # checked when queued too: only a changed setting lands here
        return _finish(message, Message.Status.FAILED, f"NotSendable: {exc.reason}")
    except EvolutionError as exc:
        outcome = outcome_of(exc)
        if outcome == "retry":
            return _retry_or_fail(message, describe(exc))
        status = Message.Status.UNKNOWN if outcome == "unknown" else Message.Status.FAILED
        return _finish(message, status, describe(exc))
    except Exception as exc:  # a bug or a local failure once the request may have gone
        logger.exception("[CHAT] message %s: unexpected error around the send", message_id)
        return _finish(
            message,
            Message.Status.UNKNOWN,
            f"{type(exc).__name__}: {exc} (after the request to Evolution may have been "
            "made). Action: check the chat in WhatsApp before re-sending.",
        )
    return _record_sent(message, result.message_id)


VARIANT_POLL = timedelta(seconds=1)


def _wait_for_variant(message: Message) -> str:
    """The voice note's variant is still being made: back to ``queued`` (this was not an
    attempt), to look again shortly, until the send deadline."""
    from .tasks import enqueue_send

    now = timezone.now()
    if message.send_deadline is not None and now >= message.send_deadline:
        return _finish(
            message,
            Message.Status.FAILED,
            "the voice note's conversion did not finish before the send deadline. "
            "Action: check the worker's log, then re-send.",
        )
    when = now + VARIANT_POLL
    Message.objects.filter(pk=message.pk, status=Message.Status.SENDING).update(
        status=Message.Status.QUEUED,
        attempts=F("attempts") - 1,
        next_attempt_at=when,
        lease_expires_at=None,
        updated_at=now,
    )
    enqueue_send(message.pk, run_after=when)
    return "waiting"


def _not_claimed(message_id: int) -> str:
    """A task for a message that is final, being sent, or not due yet; the last case (a
    task run early) is enqueued again for its time, so it is not left to recovery."""
    from .tasks import enqueue_send

    early = Message.objects.filter(
        pk=message_id, status=Message.Status.QUEUED, next_attempt_at__gt=timezone.now()
    ).values_list("next_attempt_at", flat=True)
    if early:
        enqueue_send(message_id, run_after=early[0])
        return "rescheduled"
    logger.info("[CHAT] message %s already taken or final: skipped", message_id)
    return "skipped"


def _mark_request_started(message: Message) -> None:
    now = timezone.now()
    Message.objects.filter(pk=message.pk, status=Message.Status.SENDING).update(
        request_started_at=now
    )
    message.request_started_at = now


def _record_sent(message: Message, evolution_id: str) -> str:
    from .receipts import apply_stored_receipts

    now = timezone.now()
    Message.objects.filter(pk=message.pk).update(
        status=Message.Status.SENT,
        evolution_id=evolution_id,
        error="",
        sent_at=now,
        next_attempt_at=None,
        lease_expires_at=None,
        updated_at=now,
    )
    # Receipts that arrived before this worker recorded the id.
    apply_stored_receipts(evolution_id)
    logger.info("[CHAT] message %s sent as %s", message.pk, evolution_id)
    return Message.Status.SENT


def _retry_or_fail(message: Message, error: str) -> str:
    from .tasks import enqueue_send

    now = timezone.now()
    when = policy().next_attempt(message.attempts, now, message.send_deadline)
    if when is None:
        return _finish(message, Message.Status.FAILED, f"{error} (gave up at the send deadline)")
    Message.objects.filter(pk=message.pk, status=Message.Status.SENDING).update(
        status=Message.Status.QUEUED,
        error=error[:ERROR_LIMIT],
        next_attempt_at=when,
        lease_expires_at=None,
        request_started_at=None,
        updated_at=now,
    )
    enqueue_send(message.pk, run_after=when)
    logger.warning(
        "[CHAT] message %s: attempt %d failed safely, retry at %s: %s",
        message.pk,
        message.attempts,
        when.isoformat(timespec="seconds"),
        error,
    )
    return Message.Status.QUEUED


def _finish(message: Message, status: str, error: str) -> str:
    now = timezone.now()
    Message.objects.filter(pk=message.pk).update(
        status=status,
        error=error[:ERROR_LIMIT],
        next_attempt_at=None,
        lease_expires_at=None,
        updated_at=now,
    )
    log = logger.error if status == Message.Status.FAILED else logger.warning
    log("[CHAT] message %s %s after %d attempt(s): %s", message.pk, status, message.attempts, error)
    return status


def describe(exc: EvolutionError) -> str:
    """``<ErrorClass>: <what Evolution said> Action: <what the operator should do>``: the
    class names the cause (instance not connected, download, auth...), so the record
    sends an operator to the right place."""
    action = f" Action: {exc.action}"
    text = f"{type(exc).__name__}: {exc}"[: ERROR_LIMIT - len(action) - 1]
    if not text.endswith((".", ")")):
        text += "."
    return f"{text}{action}"[:ERROR_LIMIT]
