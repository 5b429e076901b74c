"""Outbound messages before the worker: checked, recorded as ``queued`` and enqueued.

The send itself happens in a worker (chat.delivery, through the engine's
:func:`mediacache.whatsapp.send_via_evolution`).
"""

from __future__ import annotations

import logging
import re
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from mediacache.registry import media_model
from mediacache.whatsapp import check_sendable as whatsapp_check
from mediacache.whatsapp import mediatype_for, send_warnings

from .models import Message, MessageAttachment

logger = logging.getLogger("chat")

_JID = re.compile(r"[0-9]{5,20}(-[0-9]{5,20})?@(s\.whatsapp\.net|g\.us|lid)")
_SEPARATORS = re.compile(r"[\s().+-]")


class InvalidNumber(ValueError):
    pass


def normalize_number(raw: str) -> str:
    """Digits of a phone number (``+55 (11) 9…`` → ``5511…``), or a full WhatsApp JID."""
    value = raw.strip()
    if _JID.fullmatch(value):
        return value
    digits = _SEPARATORS.sub("", value)
    if not digits.isascii() or not digits.isdigit() or not 8 <= len(digits) <= 15:
        raise InvalidNumber(
            "number must be a phone number in international form (8-15 digits) or a WhatsApp JID"
        )
    return digits


def send_deadline(now: datetime | None = None) -> datetime:
    """Until when safe failures of a message queued (or re-queued) now are retried."""
    start = now or timezone.now()
    return start + timedelta(seconds=settings.MESSAGE_DELIVERY["SEND_DEADLINE"])


class AttachmentTaken(Exception):
    """The attachment already belongs to a message."""


def queue_message(
    number: str,
    attachment: MessageAttachment,
    caption: str = "",
    *,
    as_document: bool = False,
    idempotency_scope: str = "",
    idempotency_key: str | None = None,
    request_fingerprint: str = "",
) -> Message:
    """Create the ``queued`` message, take the attachment for it, and enqueue its send
    once this commits: one transaction, so a worker never sees half of it.

    Raises AttachmentTaken when the attachment already belongs to a message (two
    requests for one attachment: the second loses here, before anything is sent), and
    IntegrityError when ``idempotency_key`` was taken meanwhile (the caller answers with
    the winner's message).
    """
    from .tasks import enqueue_send

    with transaction.atomic():
        message = Message.objects.create(
            direction=Message.Direction.OUTBOUND,
            number=number,
            caption=caption,
            status=Message.Status.QUEUED,
            send_as_document=as_document,
            send_deadline=send_deadline(),
            idempotency_scope=idempotency_scope,
            idempotency_key=idempotency_key,
            request_fingerprint=request_fingerprint,
        )
        taken = MessageAttachment.objects.filter(pk=attachment.pk, message__isnull=True).update(
            message=message
        )
        if not taken:
            raise AttachmentTaken("this attachment already belongs to a message")
        enqueue_send(message.pk)
    attachment.message = message
    logger.info("[CHAT] message %s queued for %s", message.pk, number)
    return message


def queue_resend(message_id: int, *, confirm_unknown: bool = False) -> Message | None:
    """Queue a ``failed`` message again (an ``unknown`` one only with ``confirm_unknown``:
    it may have been delivered); atomic, so two clicks send once. None when the message
    is in no state to be re-sent."""
    from .tasks import enqueue_send

    allowed = [Message.Status.FAILED]
    if confirm_unknown:
        allowed.append(Message.Status.UNKNOWN)
    now = timezone.now()
    with transaction.atomic():
        claimed = Message.objects.filter(
            pk=message_id, direction=Message.Direction.OUTBOUND, status__in=allowed
        ).update(
            status=Message.Status.QUEUED,
            next_attempt_at=None,
            request_started_at=None,
            send_deadline=send_deadline(now),
            updated_at=now,
        )
        if claimed:
            enqueue_send(message_id)
    return Message.objects.get(pk=message_id) if claimed else None


def check_sendable(attachment: MessageAttachment, *, as_document: bool = False) -> str:
    """The mediatype it would go as; NotSendable (with the reason) before anything is sent."""
    obj = media_model().media_object(attachment, original=as_document)
    return whatsapp_check(obj, media_info=attachment.media_info, as_document=as_document)


def message_warnings(message: Message) -> list[str]:
    """What the recipient may notice about this message's media (a voice note too big
    for WhatsApp's play button), as the send logged it."""
    attachment = message.attachments.first()
    if attachment is None or message.direction != Message.Direction.OUTBOUND:
        return []
    obj = attachment.media_object()
    mediatype = "document" if message.send_as_document else mediatype_for(obj.content_type)
    return send_warnings(obj, mediatype)
