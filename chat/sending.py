"""Sending an attachment through Evolution API with its short link.

Voice notes (any audio) go as PTT through ``sendWhatsAppAudio``; images, video
and documents through ``sendMedia`` with a ``fileName`` whose extension matches
the real type (Evolution takes the mimetype from it, and fails on documents
without one). The URL is always the short link, never a presigned S3 URL.
"""

from __future__ import annotations

import logging
import re

from django.db import transaction
from django.utils import timezone

from evolution import EvolutionError, EvolutionUnavailable
from mediacache.headers import safe_filename
from mediacache.stats import STATS

from .gateway import evolution_client
from .models import Message, MessageAttachment
from .services import warm
from .uploads import extension_for

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


def mediatype_for(mime_type: str) -> str:
    """Evolution's ``mediatype``: image, video, audio or document."""
    base = mime_type.split(";", 1)[0].lower()
    if base.startswith("image/") and base != "image/svg+xml":
        return "image"
    if base.startswith("video/"):
        return "video"
    if base.startswith("audio/"):
        return "audio"
    return "document"


def file_name_for(attachment: MessageAttachment) -> str:
    """The original name with the extension of the real type (``report`` → ``report.pdf``)."""
    extension = extension_for(attachment.mime_type)
    name = safe_filename(attachment.original_filename, attachment.media_hash or "file")
    stem, dot, current = name.rpartition(".")
    if dot and f".{current.lower()}" == extension:
        return name
    return f"{stem if dot else name}{extension}"


def send_message(message: Message) -> Message:
    """Send ``message``'s attachment and record the outcome on the row.

    The row must be ``pending``. Never raises for gateway errors: the message ends
    ``sent`` (with Evolution's id) or ``failed`` (with the error text).
    """
    attachment = message.attachments.first()
    if attachment is None:
        raise ValueError(f"message {message.pk} has no attachment")
    url = attachment.short_url
    logger.info("[CHAT] Using short URL: %s", url)
    try:
        warm(attachment)  # Evolution's download is then a cache HIT
    except Exception as exc:
        logger.warning("[CHAT] could not warm the cache for %s: %r", attachment.media_hash, exc)

    message.attempts += 1
    mediatype = mediatype_for(attachment.mime_type)
    try:
        with evolution_client() as client:
            if mediatype == "audio":
                logger.info("[CHAT] Sending PTT via sendWhatsAppAudio")
                result = client.send_audio(message.number, url)
            else:
                logger.info("[CHAT] Sending %s via sendMedia", mediatype)
                result = client.send_media(
                    message.number,
                    url,
                    mediatype=mediatype,
                    mimetype=attachment.mime_type,
                    file_name=file_name_for(attachment),
                    caption=message.caption or None,
                )
    except EvolutionError as exc:
        STATS.evolution_send("failed")
        message.status = Message.Status.FAILED
        message.error = _describe(exc)
        logger.error(
            "[CHAT] Evolution API response: status %s, send failed: %s",
            exc.status_code or "-",
            message.error,
        )
    else:
        STATS.evolution_send("sent")
        logger.info("[CHAT] Evolution API response: status 201")
        message.status = Message.Status.SENT
        message.evolution_id = result.message_id
        message.error = ""
        message.sent_at = timezone.now()
    message.save(
        update_fields=["status", "evolution_id", "error", "attempts", "sent_at", "updated_at"]
    )
    return message


def _describe(exc: EvolutionError) -> str:
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, EvolutionUnavailable) and exc.maybe_sent:
        text += " (the gateway may have delivered it: check WhatsApp before re-sending)"
    return text[:2000]


def create_outbound(number: str, attachment: MessageAttachment, caption: str = "") -> Message:
    with transaction.atomic():
        message = Message.objects.create(
            direction=Message.Direction.OUTBOUND,
            number=number,
            caption=caption,
            status=Message.Status.PENDING,
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
