"""The HTTP API (django-ninja): uploads and attachment look-ups, with an OpenAPI schema.

django-ninja over DRF: typed pydantic schemas give the OpenAPI document for free,
it is small, and it runs sync or async views under the same ASGI server.
"""

from __future__ import annotations

import logging
from datetime import datetime

from django.db import DatabaseError, IntegrityError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from ninja import File, Form, NinjaAPI, Schema, Status
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.files import UploadedFile

from mediacache.core.hashes import ORIGINAL_SUFFIX
from mediacache.media.variants import UndecodableMedia
from mediacache.whatsapp import NotSendable

from . import idempotency
from .auth import ApiKeyAuth
from .gateway import GatewayNotConfigured, ensure_configured
from .idempotency import IdempotencyConflict
from .models import Message, MessageAttachment
from .sending import (
    AttachmentTaken,
    InvalidNumber,
    check_sendable,
    message_warnings,
    normalize_number,
    queue_message,
    queue_resend,
)
from .services import StoreWriteFailed, create_attachment, delete_attachment
from .uploads import UploadTooLarge
from .waiting import requested_wait, wait_until_final

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
    # A large voice note's variant is being made by a worker (VOICE_BACKGROUND_BYTES);
    # short_url serves the upload as it came until then, and a send waits for it.
    variant_pending: bool

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
    # queued → sending → sent | failed | unknown ("may have been sent"); received (inbound)
    status: str
    caption: str
    evolution_id: str | None
    error: str
    attempts: int
    created_at: datetime
    sent_at: datetime | None
    next_attempt_at: datetime | None  # when a queued retry goes
    # Receipts from WhatsApp: server_ack → delivery_ack → read → played, or error.
    delivery_status: str
    server_ack_at: datetime | None
    delivered_at: datetime | None
    read_at: datetime | None
    played_at: datetime | None
    idempotency_key: str | None
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
    # The Idempotency-Key header's value, for clients that cannot set headers.
    client_ref: str | None = None


class ResendIn(Schema):
    # Required to re-send an ``unknown`` message: it may have been delivered already.
    confirm: bool = False


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


UNAUTHORIZED = "missing or invalid API key (Authorization: Bearer <key>)"
Answer = tuple[int, dict[str, object], dict[str, str]]


def upload_failure(exc: BaseException) -> Answer | None:
    """(status, JSON body, headers) for the exceptions an upload can end with, the same
    through this API's handlers and the streaming entry (:mod:`chat.streaming`)."""
    if isinstance(exc, UploadTooLarge):
        return 413, {"error": str(exc)}, {}
    if isinstance(exc, StoreWriteFailed):
        body = {"error": "object store unavailable, nothing was stored"}
        return 503, body, {"Retry-After": "5"}
    if isinstance(exc, UndecodableMedia):
        return 400, {"error": f"the file could not be decoded: {exc.reason}"}, {}
    if isinstance(exc, HttpError):
        return exc.status_code, {"error": str(exc)}, {}
    if isinstance(exc, DatabaseError):
        logger.error("[CHAT] database error: %r", exc)
        return 503, {"error": "database unavailable, nothing was stored"}, {"Retry-After": "5"}
    return None


def _failure(request: HttpRequest, exc: BaseException) -> HttpResponse:
    answer = upload_failure(exc)
    assert answer is not None, exc  # registered only for the exceptions it knows
    status, body, headers = answer
    response = api.create_response(request, body, status=status)
    for name, value in headers.items():
        response[name] = value
    return response


@api.exception_handler(AuthenticationError)
def _unauthorized(request, exc):
    return _error(request, 401, UNAUTHORIZED)


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
    return _failure(request, exc)


@api.exception_handler(HttpError)
def _http_error(request, exc: HttpError):
    return _failure(request, exc)


@api.exception_handler(StoreWriteFailed)
def _store_down(request, exc):
    return _failure(request, exc)


@api.exception_handler(UndecodableMedia)
def _undecodable(request, exc: UndecodableMedia):
    return _failure(request, exc)


@api.exception_handler(NotSendable)
def _not_sendable(request, exc: NotSendable):
    return _error(request, 422, exc.reason)


@api.exception_handler(GatewayNotConfigured)
def _no_gateway(request, exc):
    return _error(request, 503, str(exc))


@api.exception_handler(IdempotencyConflict)
def _idempotency_conflict(request, exc: IdempotencyConflict):
    return _error(request, 422, str(exc))


@api.exception_handler(AttachmentTaken)
def _attachment_taken(request, exc: AttachmentTaken):
    return _error(request, 409, str(exc))


@api.exception_handler(InvalidNumber)
def _bad_number(request, exc):
    return _error(request, 400, str(exc))


@api.exception_handler(DatabaseError)
def _database_down(request, exc):
    return _failure(request, exc)


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
    "parameters": [
        {
            "name": "Idempotency-Key",
            "in": "header",
            "required": False,
            "schema": {"type": "string", "maxLength": 255},
            "description": "A repeated request with the same key returns the same message "
            "and never sends twice; the same key with a different body is 422.",
        },
        {
            "name": "Prefer",
            "in": "header",
            "required": False,
            "schema": {"type": "string", "example": "wait=10"},
            "description": "wait=N (N <= 25): answer with the send's outcome if it comes "
            "within N seconds (201 sent, 502 failed or unknown), else 202.",
        },
    ],
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
                        "client_ref": {"type": "string"},
                        "file": {"type": "string", "format": "binary"},
                    },
                }
            },
        },
    },
}
_SEND_RESPONSES = {
    200: MessageOut,
    201: MessageOut,
    202: MessageOut,
    502: MessageOut,
    **_SEND_ERRORS,
    404: ErrorOut,
    409: ErrorOut,
}


@api.post(
    "/messages/",
    response=_SEND_RESPONSES,
    summary="Send an attachment to a WhatsApp number through Evolution API",
    openapi_extra=_SEND_BODY,
)
def send(request: HttpRequest, response: HttpResponse):
    """JSON ``{number, attachment_id, caption?}``, or multipart ``file`` + ``number`` (+ caption).

    Queues the send and answers **202** with the message (``status: queued``) and its
    ``Location``; a worker sends it (audio as a voice note, the rest through sendMedia)
    and ``GET`` shows its progress. ``Prefer: wait=N`` waits up to N s (max 25) for the
    outcome: 201 when Evolution accepted it, 502 when it failed or may have (``unknown``).
    422 when WhatsApp would refuse it as its type (video not H.264/AAC MP4 or over 16 MB,
    ...) before anything is queued: ``as_document: true`` sends it as a document.
    ``Idempotency-Key`` (or ``client_ref``) makes a retry return the same message.
    """
    ensure_configured()  # before anything is stored or recorded
    scope = request.auth.prefix  # type: ignore[attr-defined]
    if request.content_type == "multipart/form-data":
        if "file" not in request.FILES:
            raise HttpError(400, "multipart sends need a 'file' field")
        payload = SendIn(
            number=request.POST.get("number", ""),
            attachment_id=0,
            caption=request.POST.get("caption", ""),
            as_document=form_bool(request.POST.get("as_document")) or False,
            client_ref=request.POST.get("client_ref") or None,
        )
        number = normalize_number(payload.number)
        upload = request.FILES["file"]
        voice_note = form_bool(request.POST.get("voice_note"))
        meaning = {
            "file_sha256": getattr(request, "upload_sha256", {}).get("file", ""),
            "file_size": upload.size,
            "voice_note": voice_note,
        }
    else:
        payload = _parse_json(request, SendIn)
        number = normalize_number(payload.number)
        meaning = {"attachment_id": payload.attachment_id}
    key = _idempotency_key(request, payload.client_ref)
    meaning.update(number=number, caption=payload.caption, as_document=payload.as_document)
    request_fingerprint = idempotency.fingerprint(meaning)
    earlier = idempotency.find(scope, key, request_fingerprint)
    if earlier is not None:
        return _answer(request, response, earlier, replayed=True)
    if request.content_type == "multipart/form-data":
        attachment = _store_upload(request, upload, voice_note)
    else:
        attachment = get_object_or_404(MessageAttachment, pk=payload.attachment_id)
    try:
        if attachment.message_id is not None:
            raise AttachmentTaken("this attachment already belongs to a message")
        check_sendable(attachment, as_document=payload.as_document)  # 422 before any row
        message = queue_message(
            number,
            attachment,
            payload.caption,
            as_document=payload.as_document,
            idempotency_scope=scope,
            idempotency_key=key,
            request_fingerprint=request_fingerprint,
        )
    except (IntegrityError, AttachmentTaken):
        # A concurrent request with the same key may have won the race (its message took
        # the key, or the attachment): answer with its message; else the error stands.
        if request.content_type == "multipart/form-data":
            delete_attachment(attachment)
        earlier = idempotency.find(scope, key, request_fingerprint)
        if earlier is None:
            raise
        return _answer(request, response, earlier, replayed=True)
    except Exception:
        if request.content_type == "multipart/form-data":
            delete_attachment(attachment)  # nothing half-stored: the upload goes too
        raise
    return _answer(request, response, message)


def _idempotency_key(request: HttpRequest, client_ref: str | None) -> str | None:
    header = request.headers.get(idempotency.HEADER)
    if header is not None and client_ref is not None and header.strip() != client_ref.strip():
        raise HttpError(400, f"{idempotency.HEADER} and client_ref differ; send one of them")
    try:
        return idempotency.clean_key(header if header is not None else client_ref)
    except ValueError as exc:
        raise HttpError(400, str(exc)) from exc


def _answer(
    request: HttpRequest, response: HttpResponse, message: Message, *, replayed: bool = False
):
    """202 with the message and its Location; the outcome instead when the caller asked
    to wait (``Prefer: wait=N``) and it came in time."""
    response["Location"] = f"{request.build_absolute_uri('/api/messages/')}{message.pk}"
    if replayed:
        response["Idempotent-Replayed"] = "true"
    wait = requested_wait(request.headers.get("Prefer"))
    if wait is not None:
        response["Preference-Applied"] = f"wait={wait:g}"
        message = wait_until_final(message, wait)
    if message.status == Message.Status.SENT:
        return Status(201 if wait is not None else 200 if replayed else 202, message)
    if message.status in (Message.Status.FAILED, Message.Status.UNKNOWN) and wait is not None:
        return Status(502, message)
    return Status(200 if replayed and message.is_final else 202, message)


@api.get("/messages/{message_id}", response={200: MessageOut, 401: ErrorOut, 404: ErrorOut})
def get_message(request: HttpRequest, message_id: int):
    return get_object_or_404(Message, pk=message_id)


@api.post(
    "/messages/{message_id}/resend",
    response={
        201: MessageOut,
        202: MessageOut,
        502: MessageOut,
        400: ErrorOut,
        401: ErrorOut,
        404: ErrorOut,
        409: ErrorOut,
    },
    summary="Queue a failed message again (an unknown one with confirm: true)",
)
def resend(request: HttpRequest, message_id: int, response: HttpResponse):
    """``failed`` messages are queued again at once (202, or the outcome with ``Prefer:
    wait=N``). ``unknown`` ones may have been delivered: they need ``{"confirm": true}``,
    else 409 says so."""
    current = get_object_or_404(Message, pk=message_id, direction=Message.Direction.OUTBOUND)
    confirm = False
    if request.body:
        confirm = _parse_json(request, ResendIn).confirm
    message = queue_resend(message_id, confirm_unknown=confirm)
    if message is None:
        if current.status == Message.Status.UNKNOWN:
            raise HttpError(
                409,
                "this message may have been delivered (status unknown): check the chat, "
                'then re-send with {"confirm": true}',
            )
        raise HttpError(409, "only failed (or, confirmed, unknown) messages can be re-sent")
    return _answer(request, response, message)


def form_bool(value: str | None) -> bool | None:
    if value is None or value == "":
        return None
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise HttpError(400, f"expected true or false, got {value[:20]!r}")


def attachment_json(attachment: MessageAttachment) -> bytes:
    """The 201's body as this API renders it (:mod:`chat.streaming` answers with it)."""
    data = AttachmentOut.from_orm(attachment).model_dump()
    return api.renderer.render(None, data, response_status=201).encode()  # type: ignore[arg-type]


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
