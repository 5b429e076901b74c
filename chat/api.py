"""The HTTP API (django-ninja): uploads and attachment look-ups, with an OpenAPI schema.

django-ninja over DRF: typed pydantic schemas give the OpenAPI document for free,
it is small, and it runs sync or async views under the same ASGI server.
"""

from __future__ import annotations

import logging
from datetime import datetime

from django.db import DatabaseError
from django.http import Http404, HttpRequest
from django.shortcuts import get_object_or_404
from ninja import File, Form, NinjaAPI, Schema, Status
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.files import UploadedFile

from mediacache.core.hashes import ORIGINAL_SUFFIX
from mediacache.media.variants import UndecodableMedia
from mediacache.whatsapp import NotSendable

from .auth import ApiKeyAuth
from .gateway import GatewayNotConfigured, ensure_configured
from .models import Message, MessageAttachment
from .sending import (
    InvalidNumber,
    check_sendable,
    claim_for_resend,
    create_outbound,
    message_warnings,
    normalize_number,
    send_message,
)
from .services import StoreWriteFailed, create_attachment, delete_attachment
from .uploads import UploadTooLarge

logger = logging.getLogger("chat")

api = NinjaAPI(
    title="Mediacache API",
    version="1",
    description="Upload chat media and get short, stable links for WhatsApp gateways.",
    auth=ApiKeyAuth(),
    urls_namespace="api",
)


class AttachmentOut(Schema):
    id: int
    media_hash: str | None  # None for rows from before short links, until the backfill
    short_url: str | None
    mime_type: str
    size: int
    sha256: str
    original_filename: str
    created_at: datetime
    expires_at: datetime | None
    # The WhatsApp-ready variant short_url serves (voice note: "audio/ogg; codecs=opus",
    # image: "image/jpeg"), None when short_url serves the upload as it came.
    variant_mime_type: str | None
    variant_size: int | None
    original_url: str | None  # the upload as it came, always
    duration_seconds: float | None  # audio only
    waveform: list[int] | None  # audio only: 64 values 0-100

    @staticmethod
    def resolve_variant_mime_type(attachment: MessageAttachment) -> str | None:
        return attachment.variant_mime_type if attachment.variant else None

    @staticmethod
    def resolve_variant_size(attachment: MessageAttachment) -> int | None:
        return attachment.variant_size if attachment.variant else None

    @staticmethod
    def resolve_original_url(attachment: MessageAttachment) -> str | None:
        return attachment.short_url + ORIGINAL_SUFFIX if attachment.short_url else None


class MessageOut(Schema):
    id: int
    direction: str
    number: str
    status: str
    caption: str
    evolution_id: str | None
    error: str
    attempts: int
    created_at: datetime
    sent_at: datetime | None
    send_as_document: bool
    attachment: AttachmentOut | None
    # E.g. a voice note over WhatsApp's 512 KB play-button size (sent anyway).
    warnings: list[str]

    @staticmethod
    def resolve_attachment(message: Message) -> MessageAttachment | None:
        return message.attachments.first()

    @staticmethod
    def resolve_warnings(message: Message) -> list[str]:
        return message_warnings(message)


class SendIn(Schema):
    number: str
    attachment_id: int
    caption: str = ""
    # Send as a document (the upload as it came): for video WhatsApp will not take as video.
    as_document: bool = False


class ErrorOut(Schema):
    error: str
    detail: object | None = None


def _error(request: HttpRequest, status: int, message: str, detail: object = None, **headers):
    body = {"error": message}
    if detail is not None:
        body["detail"] = detail
    response = api.create_response(request, body, status=status)
    for name, value in headers.items():
        response[name.replace("_", "-")] = value
    return response


@api.exception_handler(AuthenticationError)
def _unauthorized(request, exc):
    return _error(request, 401, "missing or invalid API key (Authorization: Bearer <key>)")


@api.exception_handler(ValidationError)
def _invalid(request, exc: ValidationError):
    # Only where and what: echoing the input back could be large or unserializable.
    detail = [{"loc": e.get("loc"), "msg": e.get("msg")} for e in exc.errors]
    return _error(request, 400, "invalid request", detail)


@api.exception_handler(Http404)
def _not_found(request, exc):
    return _error(request, 404, "not found")


@api.exception_handler(UploadTooLarge)
def _too_large(request, exc: UploadTooLarge):
    return _error(request, 413, str(exc))


@api.exception_handler(HttpError)
def _http_error(request, exc: HttpError):
    return _error(request, exc.status_code, str(exc))


@api.exception_handler(StoreWriteFailed)
def _store_down(request, exc):
    return _error(request, 503, "object store unavailable, nothing was stored", Retry_After="5")


@api.exception_handler(UndecodableMedia)
def _undecodable(request, exc: UndecodableMedia):
    return _error(request, 400, f"the file could not be decoded: {exc.reason}")


@api.exception_handler(NotSendable)
def _not_sendable(request, exc: NotSendable):
    return _error(request, 422, exc.reason)


@api.exception_handler(GatewayNotConfigured)
def _no_gateway(request, exc):
    return _error(request, 503, str(exc))


@api.exception_handler(InvalidNumber)
def _bad_number(request, exc):
    return _error(request, 400, str(exc))


@api.exception_handler(DatabaseError)
def _database_down(request, exc):
    logger.error("[CHAT] database error: %r", exc)
    return _error(request, 503, "database unavailable, nothing was stored", Retry_After="5")


@api.exception_handler(Exception)
def _unexpected(request, exc):
    from django.http.multipartparser import MultiPartParserError

    if isinstance(exc, MultiPartParserError):
        return _error(request, 400, f"malformed multipart body: {exc}")
    logger.exception("[CHAT] unexpected error")
    return _error(request, 500, "internal error")


_ERRORS = {400: ErrorOut, 401: ErrorOut, 413: ErrorOut, 503: ErrorOut}
_SEND_ERRORS = {**_ERRORS, 422: ErrorOut}


@api.post(
    "/attachments/",
    response={201: AttachmentOut, **_ERRORS},
    summary="Upload a file and get its short link",
)
def upload_attachment(
    request: HttpRequest, file: File[UploadedFile], voice_note: Form[bool | None] = None
):
    """Stores the bytes (type sniffed from content), then answers 201 with the short URL.

    Audio (or ``voice_note=true``) gets an Ogg Opus mono variant that the short URL
    serves; audio the decoder cannot read is refused with 400 and nothing is stored.
    Images WhatsApp would not show (over 5 MB, HEIC, WebP, TIFF, BMP) get a JPEG one.
    """
    return Status(201, _store_upload(request, file, voice_note))


@api.get(
    "/attachments/{attachment_id}",
    response={200: AttachmentOut, 401: ErrorOut, 404: ErrorOut},
    summary="One attachment",
)
def get_attachment(request: HttpRequest, attachment_id: int):
    return get_object_or_404(MessageAttachment, pk=attachment_id)


@api.delete(
    "/attachments/{attachment_id}",
    response={204: None, 401: ErrorOut, 404: ErrorOut},
    summary="Delete an attachment: its object, its row, and its cached copies",
)
def remove_attachment(request: HttpRequest, attachment_id: int):
    delete_attachment(get_object_or_404(MessageAttachment, pk=attachment_id))
    return Status(204, None)


_SEND_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": SendIn.json_schema()},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["number", "file"],
                    "properties": {
                        "number": {"type": "string"},
                        "caption": {"type": "string"},
                        "as_document": {"type": "boolean"},
                        "voice_note": {"type": "boolean"},
                        "file": {"type": "string", "format": "binary"},
                    },
                }
            },
        },
    }
}
_SEND_RESPONSES = {201: MessageOut, 502: MessageOut, **_SEND_ERRORS, 404: ErrorOut}


@api.post(
    "/messages/",
    response=_SEND_RESPONSES,
    summary="Send an attachment to a WhatsApp number through Evolution API",
    openapi_extra=_SEND_BODY,
)
def send(request: HttpRequest):
    """JSON ``{number, attachment_id, caption?}``, or multipart ``file`` + ``number`` (+ caption).

    Audio goes as a voice note (PTT); the rest through sendMedia. 201 when Evolution
    accepted it; 502 with the message (``status: failed``, ``error``) when it did not;
    422 when WhatsApp would refuse it as its type (video not H.264/AAC MP4 or over
    16 MB, ...) before anything is sent: ``as_document: true`` sends it as a document.
    """
    ensure_configured()  # before anything is stored or recorded
    if request.content_type == "multipart/form-data":
        if "file" not in request.FILES:
            raise HttpError(400, "multipart sends need a 'file' field")
        payload = SendIn(
            number=request.POST.get("number", ""),
            attachment_id=0,
            caption=request.POST.get("caption", ""),
            as_document=_form_bool(request.POST.get("as_document")) or False,
        )
        number = normalize_number(payload.number)
        attachment = _store_upload(
            request, request.FILES["file"], _form_bool(request.POST.get("voice_note"))
        )
    else:
        payload = _parse_json(request, SendIn)
        number = normalize_number(payload.number)
        attachment = get_object_or_404(MessageAttachment, pk=payload.attachment_id)
        if attachment.message_id is not None:
            raise HttpError(400, "this attachment already belongs to a message")
    check_sendable(attachment, as_document=payload.as_document)  # 422 before any row
    message = send_message(
        create_outbound(number, attachment, payload.caption, as_document=payload.as_document)
    )
    return Status(201 if message.status == Message.Status.SENT else 502, message)


@api.get("/messages/{message_id}", response={200: MessageOut, 401: ErrorOut, 404: ErrorOut})
def get_message(request: HttpRequest, message_id: int):
    return get_object_or_404(Message, pk=message_id)


@api.post(
    "/messages/{message_id}/resend",
    response={201: MessageOut, 502: MessageOut, 401: ErrorOut, 404: ErrorOut, 409: ErrorOut},
    summary="Send a failed message again",
)
def resend(request: HttpRequest, message_id: int):
    get_object_or_404(Message, pk=message_id, direction=Message.Direction.OUTBOUND)
    message = claim_for_resend(message_id)
    if message is None:
        raise HttpError(409, "only failed messages can be re-sent")
    message = send_message(message)
    return Status(201 if message.status == Message.Status.SENT else 502, message)


def _form_bool(value: str | None) -> bool | None:
    if value is None or value == "":
        return None
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise HttpError(400, f"expected true or false, got {value[:20]!r}")


def _store_upload(request: HttpRequest, upload, voice_note: bool | None) -> MessageAttachment:
    """The multipart field ``file`` stored as an attachment (its SHA-256 came from the
    upload handler while the body streamed in)."""
    if upload.size == 0:
        raise HttpError(400, "the file is empty")
    return create_attachment(
        upload,
        original_filename=upload.name or "",
        sha256=getattr(request, "upload_sha256", {}).get("file", ""),
        voice_note=voice_note,
        for_sending=True,
    )


def _parse_json(request: HttpRequest, schema: type[Schema]):
    import json

    import pydantic

    try:
        return schema.model_validate(json.loads(request.body or b"null"))
    except json.JSONDecodeError as exc:
        raise HttpError(400, f"body is not valid JSON: {exc.msg}") from exc
    except pydantic.ValidationError as exc:
        raise ValidationError(exc.errors(include_url=False)) from exc
