"""The HTTP API (django-ninja): uploads and attachment look-ups, with an OpenAPI schema.

django-ninja over DRF: typed pydantic schemas give the OpenAPI document for free,
it is small, and it runs sync or async views under the same ASGI server.
"""

from __future__ import annotations

import logging
from datetime import datetime

from django.db import DatabaseError
from django.http import HttpRequest
from django.shortcuts import get_object_or_404
from ninja import File, NinjaAPI, Schema, Status
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.files import UploadedFile

from .auth import ApiKeyAuth
from .models import MessageAttachment
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
    media_hash: str
    short_url: str
    mime_type: str
    size: int
    sha256: str
    original_filename: str
    created_at: datetime
    expires_at: datetime


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
    return _error(request, 400, "invalid request", exc.errors)


@api.exception_handler(UploadTooLarge)
def _too_large(request, exc: UploadTooLarge):
    return _error(request, 413, str(exc))


@api.exception_handler(HttpError)
def _http_error(request, exc: HttpError):
    return _error(request, exc.status_code, str(exc))


@api.exception_handler(StoreWriteFailed)
def _store_down(request, exc):
    return _error(request, 503, "object store unavailable, nothing was stored", Retry_After="5")


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


@api.post(
    "/attachments/",
    response={201: AttachmentOut, **_ERRORS},
    summary="Upload a file and get its short link",
)
def upload_attachment(request: HttpRequest, file: File[UploadedFile]):
    """Stores the bytes (type sniffed from content), then answers 201 with the short URL."""
    if file.size == 0:
        raise HttpError(400, "the file is empty")
    sha256 = getattr(request, "upload_sha256", {}).get("file", "")
    attachment = create_attachment(file, original_filename=file.name or "", sha256=sha256)
    return Status(201, attachment)


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
