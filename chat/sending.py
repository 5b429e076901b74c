"""Messages sent through Evolution API: the row's life from pending to sent or failed.

The request itself (PTT or sendMedia, fileName, cache warming) is the engine's
:func:`mediacache.whatsapp.send_via_evolution`; this module keeps the record.
"""

from __future__ import annotations

import logging
import re

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from evolution import EvolutionError
from mediacache.registry import media_model
from mediacache.whatsapp import (
    NotSendable,
    mediatype_for,
    send_via_evolution,
    send_warnings,
)
from mediacache.whatsapp import check_sendable as whatsapp_check

from .gateway import evolution_client
from .models import Message, MessageAttachment

logger = logging.getLogger("chat")

_JID = re.compile(r"[0-9]{5,20}(-[0-9]{5,20})?@(s\.whatsapp\.net|g\.us|lid)")
_SEPARATORS = re.compile(r"[\s().+-]")
ERROR_LIMIT = 2000  # of the text kept on a failed message; the action always fits


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


def send_message(message: Message) -> Message:
    """Send ``message``'s attachment and record the outcome on the row.

    The row must be ``pending``. Never raises for gateway errors: the message ends
    ``sent`` (with Evolution's id) or ``failed`` (with the error's class, text and the
    operator's action).
    """
    attachment = message.attachments.first()
    if attachment is None:
        raise ValueError(f"message {message.pk} has no attachment")
    message.attempts += 1
    try:
        with evolution_client() as client:
            result = send_via_evolution(
                client,
                message.number,
                attachment,
                caption=message.caption or None,
                as_document=message.send_as_document,
                audio_encoding=settings.EVOLUTION.get("AUDIO_ENCODING") or None,
            )
    except EvolutionError as exc:
        message.status = Message.Status.FAILED
        message.error = _describe(exc)
    except NotSendable as exc:  # checked before the send too: only a changed setting lands here
        message.status = Message.Status.FAILED
        message.error = f"NotSendable: {exc.reason}"
    else:
        message.status = Message.Status.SENT
        message.evolution_id = result.message_id
        message.error = ""
        message.sent_at = timezone.now()
    message.save(
        update_fields=["status", "evolution_id", "error", "attempts", "sent_at", "updated_at"]
    )
    return message


def _describe(exc: EvolutionError) -> str:
    """``<ErrorClass>: <what Evolution said> Action: <what the operator should do>``: the
    class names the cause (instance not connected, download, auth...), so the record
    sends an operator to the right place."""
    action = f" Action: {exc.action}"
    text = f"{type(exc).__name__}: {exc}"[: ERROR_LIMIT - len(action) - 1]
    if not text.endswith((".", ")")):
        text += "."
    return f"{text}{action}"[:ERROR_LIMIT]


def create_outbound(
    number: str, attachment: MessageAttachment, caption: str = "", *, as_document: bool = False
) -> Message:
    with transaction.atomic():
        message = Message.objects.create(
            direction=Message.Direction.OUTBOUND,
            number=number,
            caption=caption,
            status=Message.Status.PENDING,
            send_as_document=as_document,
        )
        attachment.message = message
        attachment.save(update_fields=["message"])
    return message


def claim_for_resend(message_id: int) -> Message | None:
    """Move a failed message back to pending, atomically: two clicks send once."""
    claimed = Message.objects.filter(
        pk=message_id, direction=Message.Direction.OUTBOUND, status=Message.Status.FAILED
    ).update(status=Message.Status.PENDING, updated_at=timezone.now())
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
