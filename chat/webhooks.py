"""Evolution's webhook: media received on WhatsApp is stored and gets a short link.

``messages.upsert`` events carrying audio, images, video or documents are
stored like uploads (type sniffed from the bytes) under an inbound ``Message``.
The same WhatsApp message id delivered twice is stored once. Anything else is
acknowledged with 200 and ignored, so Evolution does not retry it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.core.files.base import ContentFile
from django.db import IntegrityError, transaction
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from evolution import EvolutionError
from mediacache.core.settings import media_settings

from .gateway import GatewayNotConfigured, evolution_client
from .models import Message, MessageAttachment
from .services import StoreWriteFailed, create_attachment, delete_attachment

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
        inbound = parse_event(payload)
        if inbound is None:
            return JsonResponse({"status": "ignored"})
        return store_inbound(inbound)
    except BadPayload as exc:
        return _error(400, str(exc))


def parse_event(payload: Any) -> InboundMedia | None:
    """The media in a ``messages.upsert`` event, or None for events we do not store."""
    if not isinstance(payload, dict):
        raise BadPayload("the event must be a JSON object")
    event = str(payload.get("event", "")).lower().replace("_", ".")
    if event != "messages.upsert":
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


def store_inbound(inbound: InboundMedia) -> JsonResponse:
    existing = _existing(inbound.message_id)
    if existing is not None:
        return JsonResponse({"status": "duplicate", "message_id": existing})
    file_name = str(inbound.media.get("fileName") or inbound.kind.removesuffix("Message"))
    encoded = inbound.base64
    if encoded is None:
        try:
            with evolution_client() as client:
                fetched = client.get_base64_from_media_message(inbound.message_id)
        except (EvolutionError, GatewayNotConfigured) as exc:
            logger.error("[CHAT] could not fetch media %s: %s", inbound.message_id, exc)
            return _error(502, f"could not fetch the media from Evolution API: {exc}")
        encoded = fetched.get("base64") or ""
        file_name = str(fetched.get("fileName") or file_name)
    raw = _decode(encoded)
    caption = inbound.media.get("caption")
    try:
        attachment = create_attachment(
            ContentFile(raw, name=file_name),
            original_filename=file_name,
            sha256=hashlib.sha256(raw).hexdigest(),
        )
    except StoreWriteFailed:
        return _error(503, "object store unavailable, nothing was stored")
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
        delete_attachment(attachment)  # a concurrent delivery of the same event won
        return JsonResponse({"status": "duplicate", "message_id": _existing(inbound.message_id)})
    logger.info(
        "[CHAT] received %s from %s -> %s", inbound.kind, message.number, attachment.short_url
    )
    return JsonResponse(
        {
            "status": "stored",
            "message_id": message.pk,
            "attachment_id": attachment.pk,
            "short_url": attachment.short_url,
            "mime_type": attachment.mime_type,
        },
        status=201,
    )


def _existing(message_id: str) -> int | None:
    return (
        Message.objects.filter(direction=Message.Direction.INBOUND, evolution_id=message_id)
        .values_list("pk", flat=True)
        .first()
    )


def _decode(encoded: str) -> bytes:
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
