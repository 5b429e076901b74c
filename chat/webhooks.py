"""Evolution's webhook: validated, stored and queued; a worker does the slow part.

The request only checks the secret and the event's shape (and the media's size and
base64 when it is inline), stores the event and enqueues it (chat.inbound): Evolution's
webhook sender has its own timeout and retries, so the answer must not wait for a media
fetch or a conversion. ``messages.upsert`` events with audio, images, video or documents
and ``messages.update`` receipts for our sends are kept; the same event delivered twice
is one row (``WebhookEvent.dedupe_key``). Anything else is acknowledged with 200 and
ignored, so Evolution does not retry it.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import IntegrityError, transaction
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from mediacache.core.settings import media_settings

from .models import WebhookEvent
from .receipts import parse_receipt

logger = logging.getLogger("chat")

MEDIA_KINDS = ("audioMessage", "imageMessage", "videoMessage", "documentMessage", "stickerMessage")


class BadPayload(ValueError):
    """The event is not what Evolution sends: 400 with this reason."""


@dataclass(frozen=True)
class InboundMedia:
    message_id: str
    remote_jid: str
    kind: str
    media: dict[str, Any]
    base64: str | None


def _error(status: int, message: str) -> JsonResponse:
    return JsonResponse({"error": message}, status=status)


@csrf_exempt
def evolution_webhook(request: HttpRequest, secret: str | None = None) -> JsonResponse:
    if request.method != "POST":
        response = _error(405, "method not allowed")
        response["Allow"] = "POST"
        return response
    expected = settings.EVOLUTION["WEBHOOK_SECRET"]
    if not expected:
        return _error(403, "webhook disabled: set EVOLUTION_WEBHOOK_SECRET")
    given = secret or request.headers.get("X-Webhook-Secret", "")
    if not hmac.compare_digest(given.encode(), expected.encode()):
        return _error(401, "wrong or missing webhook secret")
    try:
        payload = json.loads(request.body)
    except RequestDataTooBig:
        return _error(413, "webhook body over the size limit")
    except (ValueError, UnicodeDecodeError) as exc:
        return _error(400, f"body is not valid JSON: {exc}")
    try:
        kept = _what_to_keep(payload)
    except BadPayload as exc:
        return _error(400, str(exc))
    if kept is None:
        return JsonResponse({"status": "ignored"})
    event, dedupe_key = kept
    return _store_and_enqueue(payload, event, dedupe_key)


def _what_to_keep(payload: Any) -> tuple[str, str] | None:
    """(event, dedupe key) of an event a worker must process, None for the rest;
    BadPayload for what Evolution would not send."""
    if not isinstance(payload, dict):
        raise BadPayload("the event must be a JSON object")
    event = normalized_event(payload)
    if event == "messages.update":
        receipt = parse_receipt(payload)
        if receipt is None:
            return None
        return event, f"update:{receipt.evolution_id}:{receipt.step}"
    inbound = parse_event(payload)
    if inbound is None:
        return None
    if inbound.base64 is not None:
        decode_media(inbound.base64)  # 400 now rather than a failed event later
    return event, f"upsert:{inbound.message_id}"


def _store_and_enqueue(payload: dict[str, Any], event: str, dedupe_key: str) -> JsonResponse:
    from .tasks import enqueue_event

    try:
        with transaction.atomic():
            stored = WebhookEvent.objects.create(
                dedupe_key=dedupe_key[:255],
                event=event,
                instance=str(payload.get("instance") or "")[:128],
                payload=payload,
            )
            enqueue_event(stored.pk)
    except IntegrityError:
        existing = WebhookEvent.objects.filter(dedupe_key=dedupe_key[:255]).first()
        return JsonResponse({"status": "duplicate", "event_id": existing.pk if existing else None})
    return JsonResponse({"status": "queued", "event_id": stored.pk}, status=202)


def normalized_event(payload: dict[str, Any]) -> str:
    """``MESSAGES_UPSERT`` (v1, global webhooks) and ``messages.upsert`` are one event."""
    return str(payload.get("event", "")).lower().replace("_", ".")


def parse_event(payload: Any) -> InboundMedia | None:
    """The media in a ``messages.upsert`` event, or None for events we do not store."""
    if not isinstance(payload, dict):
        raise BadPayload("the event must be a JSON object")
    if normalized_event(payload) != "messages.upsert":
        return None
    data = payload.get("data")
    if not isinstance(data, dict):
        raise BadPayload("'data' must be an object")
    key = data.get("key")
    message = data.get("message")
    if not isinstance(key, dict) or not isinstance(message, dict):
        raise BadPayload("'data.key' and 'data.message' must be objects")
    message_id, remote_jid = key.get("id"), key.get("remoteJid")
    if not isinstance(message_id, str) or not message_id or not isinstance(remote_jid, str):
        raise BadPayload("'data.key.id' and 'data.key.remoteJid' must be strings")
    if key.get("fromMe") is True:
        return None  # our own sends, echoed back
    wrapped = message.get("documentWithCaptionMessage")
    if isinstance(wrapped, dict) and isinstance(wrapped.get("message"), dict):
        message = {**wrapped["message"], "base64": message.get("base64")}
    kind = next((k for k in MEDIA_KINDS if isinstance(message.get(k), dict)), None)
    if kind is None:
        return None  # text, reactions, …
    encoded = message.get("base64") or data.get("base64")
    if encoded is not None and not isinstance(encoded, str):
        raise BadPayload("'base64' must be a string")
    return InboundMedia(message_id, remote_jid, kind, message[kind], encoded or None)


def decode_media(encoded: str) -> bytes:
    """The media bytes of a base64 (or data: URL) string within MAX_UPLOAD_BYTES."""
    limit = media_settings().MAX_UPLOAD_BYTES
    if len(encoded) * 3 // 4 > limit + 3:
        raise BadPayload(f"media over the limit of {limit} bytes")
    if encoded.startswith("data:") and "," in encoded:
        encoded = encoded.split(",", 1)[1]  # a data: URL
    try:
        raw = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadPayload(f"'base64' is not valid base64: {exc}") from exc
    if not raw:
        raise BadPayload("the media is empty")
    return raw
