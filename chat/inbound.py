"""Processing a stored webhook event, run by a worker (chat.tasks.process_webhook_event).

Media (``messages.upsert``) is fetched from Evolution when the event did not carry it
(``getBase64FromMediaMessage``), stored like an upload (type sniffed, variant made) and
recorded as an inbound message; receipts (``messages.update``) go to chat.receipts.
Running an event twice stores one message: the inbound message's WhatsApp id is unique,
and a receipt step is kept once.

Evolution unreachable, or the store down, is retried with backoff until
INBOUND_DEADLINE after the event arrived; then the event is ``failed`` with the reason,
visible in the admin, and ``manage.py shell`` can enqueue it again.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import timedelta

from django.core.files.base import ContentFile
from django.db import IntegrityError, transaction
from django.utils import timezone

from evolution import EvolutionError

from .gateway import GatewayNotConfigured, evolution_client
from .models import Message, MessageAttachment, WebhookEvent
from .receipts import parse_receipt, store_receipt
from .retry import RetryPolicy
from .services import StoreWriteFailed, create_attachment, delete_attachment
from .webhooks import BadPayload, decode_media, parse_event

logger = logging.getLogger("chat")

INBOUND_DEADLINE = timedelta(hours=1)
INBOUND_RETRY = RetryPolicy(base=5.0, cap=300.0)


class Retryable(Exception):
    """The event could not be processed now for a reason that may pass."""


def process_event(event_id: int) -> str:
    event = WebhookEvent.objects.filter(pk=event_id).first()
    if event is None or event.state != WebhookEvent.State.PENDING:
        return "skipped"
    WebhookEvent.objects.filter(pk=event.pk).update(attempts=event.attempts + 1)
    event.attempts += 1
    try:
        result = _process(event)
    except Retryable as exc:
        return _retry_or_fail(event, str(exc))
    except BadPayload as exc:  # checked at the door: only a changed limit lands here
        return _done(event, WebhookEvent.State.FAILED, str(exc))
    return _done(event, WebhookEvent.State.DONE, "", result)


def _process(event: WebhookEvent) -> str:
    if event.event == "messages.update":
        receipt = parse_receipt(event.payload)
        if receipt is None:
            return "ignored"
        return "receipt" if store_receipt(receipt) else "duplicate"
    inbound = parse_event(event.payload)
    if inbound is None:
        return "ignored"
    if Message.objects.filter(
        direction=Message.Direction.INBOUND, evolution_id=inbound.message_id
    ).exists():
        return "duplicate"
    file_name = str(inbound.media.get("fileName") or inbound.kind.removesuffix("Message"))
    encoded = inbound.base64
    if encoded is None:
        try:
            with evolution_client() as client:
                fetched = client.get_base64_from_media_message(inbound.message_id)
        except (EvolutionError, GatewayNotConfigured) as exc:
            raise Retryable(f"could not fetch the media from Evolution API: {exc}") from exc
        encoded = fetched.get("base64") or ""
        file_name = str(fetched.get("fileName") or file_name)
    raw = decode_media(encoded)
    caption = inbound.media.get("caption")
    try:
        attachment = create_attachment(
            ContentFile(raw, name=file_name),
            original_filename=file_name,
            sha256=hashlib.sha256(raw).hexdigest(),
        )
    except StoreWriteFailed as exc:
        raise Retryable(f"object store unavailable: {exc}") from exc
    try:
        with transaction.atomic():
            message = Message.objects.create(
                direction=Message.Direction.INBOUND,
                number=inbound.remote_jid.removesuffix("@s.whatsapp.net"),
                status=Message.Status.RECEIVED,
                evolution_id=inbound.message_id,
                caption=caption if isinstance(caption, str) else "",
            )
            MessageAttachment.objects.filter(pk=attachment.pk).update(message=message)
    except IntegrityError:
        delete_attachment(attachment)  # a concurrent run of the same event won
        return "duplicate"
    logger.info(
        "[CHAT] received %s from %s -> %s", inbound.kind, message.number, attachment.short_url
    )
    return "stored"


def _retry_or_fail(event: WebhookEvent, error: str) -> str:
    from .tasks import enqueue_event

    now = timezone.now()
    when = INBOUND_RETRY.next_attempt(event.attempts, now, event.received_at + INBOUND_DEADLINE)
    if when is None:
        return _done(event, WebhookEvent.State.FAILED, f"{error} (gave up)")
    WebhookEvent.objects.filter(pk=event.pk).update(error=error[:2000], next_attempt_at=when)
    enqueue_event(event.pk, run_after=when)
    logger.warning("[CHAT] webhook event %s: %s; retry at %s", event.pk, error, when.isoformat())
    return "retry"


def _done(event: WebhookEvent, state: str, error: str, result: str = "") -> str:
    # The media is in the store now: the payload keeps the event, not megabytes of base64.
    payload = _without_media(event.payload) if state == WebhookEvent.State.DONE else event.payload
    WebhookEvent.objects.filter(pk=event.pk).update(
        state=state,
        error=error[:2000],
        processed_at=timezone.now(),
        next_attempt_at=None,
        payload=payload,
    )
    if state == WebhookEvent.State.FAILED:
        logger.error("[CHAT] webhook event %s failed: %s", event.pk, error)
    return result or state


def _without_media(payload: dict) -> dict:
    data = payload.get("data")
    if not isinstance(data, dict):
        return payload
    message = data.get("message")
    stripped = {**data, "base64": None} if "base64" in data else dict(data)
    if isinstance(message, dict) and message.get("base64"):
        stripped["message"] = {**message, "base64": None}
    return {**payload, "data": stripped}
