"""``POST /api/attachments/`` taken in before Django, while the body arrives.

Django's ASGI handler reads the whole body into a spooled file before any view runs, so
nothing reached the store until the client had sent its last byte. Here the API key is
checked first (401 with nothing read), the multipart body is parsed as it comes
(:mod:`chat.multipart`), and the file's chunks go through one pipeline
(:mod:`chat.ingest`: size limit, SHA-256, sniff, the store writer whose S3 parts leave
while later bytes arrive, a spooled copy for the conversion). The rest is the Django
view's own code, :func:`chat.services.create_attachment` with the object already stored,
and the same answers (:func:`chat.api.upload_failure`, :func:`chat.api.attachment_json`).

Blocking work runs off the event loop: the pipeline in a thread pool of its own, the
database in a thread of this request's own (``ThreadSensitiveContext``, as Django gives
each request), so a slow client holds neither the loop nor another request's thread.
The Django view stays for WSGI and for host projects that do not wrap their app.
A client that goes away, and any failure, leaves nothing stored.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from asgiref.sync import ThreadSensitiveContext, sync_to_async
from django.conf import settings
from django.core.handlers.asgi import ASGIRequest
from django.db import close_old_connections
from django.http import HttpResponse
from django.http.request import split_domain_port, validate_host
from django.middleware.security import SecurityMiddleware
from ninja.errors import HttpError

from config import requestid
from mediacache.core.asgi_types import ASGIApp, Receive, Scope, Send
from mediacache.core.counters import STATS
from mediacache.core.settings import media_settings
from mediacache.engine import get_engine
from mediacache.store.base import StoreUnavailable
from mediacache.variants import StoreWriteFailed

from .ingest import EmptyUpload, Ingested, UploadIngest
from .multipart import FILE_FIELD, MalformedMultipart, MultipartForm, boundary_of
from .uploads import UploadTooLarge

logger = logging.getLogger("chat")

T = TypeVar("T")
UPLOAD_PATH = "/api/attachments/"
# Chunks handed to the pipeline's thread at once: fewer thread hops for a large body.
FEED_BYTES = 512 * 1024
# Multipart framing around the file (the same allowance as the body limit's).
FRAMING_BYTES = 64 * 1024
_INGEST = ThreadPoolExecutor(max_workers=16, thread_name_prefix="upload-ingest")
_JSON = b"application/json; charset=utf-8"


class ClientGone(Exception):
    """The client disconnected before the body ended."""


class StreamingUploads:
    """ASGI middleware: uploads to :data:`UPLOAD_PATH` here, everything else to ``app``."""

    def __init__(self, app: ASGIApp, *, path: str = UPLOAD_PATH) -> None:
        self.app = app  # ``.app``: mediacache.fastpath finds the router through it
        self.path = path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] == "POST"
            and scope["path"] == self.path
            and getattr(settings, "STREAMING_UPLOADS", True)
            and not _refused_by_django(scope)
        ):
            async with ThreadSensitiveContext():
                await _StreamedUpload(scope, receive, send).run()
            return
        await self.app(scope, receive, send)


def _refused_by_django(scope: Scope) -> bool:
    """Whether Django would answer before any view: a host not in ``ALLOWED_HOSTS``
    (400), or plain HTTP under ``SECURE_SSL_REDIRECT`` (301). Those requests go to
    Django, so the answer is its own; the checks are Django's public helpers."""
    headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}
    host = headers.get("host", "")
    if settings.USE_X_FORWARDED_HOST and "x-forwarded-host" in headers:
        host = headers["x-forwarded-host"].split(",")[-1].strip()
    allowed = settings.ALLOWED_HOSTS
    if settings.DEBUG and not allowed:
        allowed = [".localhost", "127.0.0.1", "[::1]"]  # as HttpRequest.get_host
    domain, _port = split_domain_port(host)
    if not domain or not validate_host(domain, allowed):
        return True
    if not settings.SECURE_SSL_REDIRECT:
        return False
    scheme = scope.get("scheme", "http")
    if settings.SECURE_PROXY_SSL_HEADER:
        name, secure = settings.SECURE_PROXY_SSL_HEADER
        forwarded = headers.get(name.removeprefix("HTTP_").replace("_", "-").lower())
        if forwarded is not None:
            scheme = "https" if forwarded.split(",", 1)[0].strip() == secure else "http"
    return scheme != "https"


class _StreamedUpload:
    def __init__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.scope = scope
        self.headers = {name: value for name, value in scope["headers"]}
        # The id Django's requests get (config.requestid): on this upload's log lines
        # and echoed in its answer, so a streamed upload is found in the logs the same way.
        incoming = self.headers.get(b"x-request-id", b"").decode("latin-1")
        self.request_id = requestid.accept_or_make(incoming)
        requestid.current.set(self.request_id)
        self.receive = receive
        self.send = send
        self.ingest: UploadIngest | None = None
        self.ingested: Ingested | None = None
        self.body_read = False  # else an answer closes the connection: the rest is unread

    async def run(self) -> None:
        try:
            status, body, headers = await self._take()
        except ClientGone:
            STATS.count_event("upload:disconnected")
            logger.warning(
                "[CHAT] upload ended mid-body (client gone, or over the body limit): nothing stored"
            )
            return
        except Exception as exc:
            status, body, headers = self._answer_for(exc)
        finally:
            if self.ingested is not None:
                self.ingested.file.close()  # the spooled copy
        await self._respond(status, body, headers)

    async def _take(self) -> tuple[int, bytes, dict[str, str]]:
        if not await _in_thread(_authenticated, self.headers.get(b"authorization", b"")):
            from .api import UNAUTHORIZED

            return 401, _json({"error": UNAUTHORIZED}), {"Connection": "close"}  # body unread
        content_type = self.headers.get(b"content-type", b"").decode("latin-1")
        boundary = boundary_of(content_type)
        if boundary is None:
            return _file_missing(body_read=False)
        limit = media_settings().MAX_UPLOAD_BYTES
        declared = self.headers.get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit + FRAMING_BYTES:
            raise UploadTooLarge(limit)
        try:
            form = await self._read(MultipartForm(boundary), limit)
            if self.ingest is None:
                return _file_missing(body_read=True)
            from .api import form_bool

            voice_note = form_bool(form.fields.get("voice_note"))
            self.ingested = await _off_loop(self.ingest.finish)
            return 201, await _in_thread(_record, self.ingested, voice_note), {}
        except BaseException:
            if self.ingest is not None:
                await _off_loop(self.ingest.abort)
            raise

    async def _read(self, form: MultipartForm, limit: int) -> MultipartForm:
        """The whole body, through the parser; the file's bytes into the pipeline."""
        received = file_bytes = 0
        pending: list[bytes] = []
        pending_bytes = 0
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                raise ClientGone
            body: bytes = message.get("body", b"")
            received += len(body)
            if received > limit + FRAMING_BYTES:
                raise UploadTooLarge(limit)
            fed = form.feed(body)
            if fed.started is not None:
                store = get_engine().store
                part = fed.started
                self.ingest = UploadIngest(
                    store, filename=part.filename, content_type=part.content_type
                )
            pending += fed.chunks
            arrived = sum(map(len, fed.chunks))
            pending_bytes += arrived
            file_bytes += arrived
            if file_bytes > limit:  # at once, not when the batch is fed (the pipeline checks too)
                raise UploadTooLarge(limit)
            more = message.get("more_body", False)
            if (
                self.ingest is not None
                and pending
                and (pending_bytes >= FEED_BYTES or fed.file_ended or not more)
            ):
                await _off_loop(self.ingest.feed, pending)
                pending, pending_bytes = [], 0
            if not more:
                self.body_read = True
                form.finish()
                return form

    def _answer_for(self, exc: Exception) -> tuple[int, bytes, dict[str, str]]:
        from .api import upload_failure

        if isinstance(exc, StoreUnavailable):
            logger.error("[CHAT] store write failed while streaming an upload: %r", exc)
            exc = StoreWriteFailed(str(exc))
        elif isinstance(exc, EmptyUpload):
            exc = HttpError(400, str(exc))
        elif isinstance(exc, MalformedMultipart):
            exc = HttpError(400, f"malformed multipart body: {exc}")
        answer = upload_failure(exc)
        if answer is None:
            logger.exception("[CHAT] unexpected error in a streamed upload", exc_info=exc)
            answer = 500, {"error": "internal error"}, {}
        status, body, headers = answer
        STATS.count_event("upload:refused" if status < 500 else "upload:failed")
        logger.warning("[CHAT] streamed upload answered %d: %s", status, body["error"])
        if not self.body_read:
            headers = {**headers, "Connection": "close"}
        return status, _json(body), headers

    async def _respond(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        raw = _with_django_headers(self.scope, status, body, headers)
        raw.append((requestid.HEADER.lower().encode(), self.request_id.encode("latin-1")))
        await self.send({"type": "http.response.start", "status": status, "headers": raw})
        await self.send({"type": "http.response.body", "body": body})


def _with_django_headers(
    scope: Scope, status: int, body: bytes, headers: dict[str, str]
) -> list[tuple[bytes, bytes]]:
    """The answer's headers as Django's view would send them: its own
    ``SecurityMiddleware`` adds HSTS (on HTTPS), ``Referrer-Policy``,
    ``Cross-Origin-Opener-Policy`` and ``nosniff`` from the same settings, so the two
    entries cannot drift apart."""
    response = HttpResponse(body, status=status, content_type=_JSON.decode())
    for name, value in headers.items():
        response[name] = value
    request = ASGIRequest(scope, io.BytesIO())  # the body is already read: headers only
    secured = SecurityMiddleware(lambda _request: response)(request)
    raw = [(b"content-length", str(len(body)).encode())]
    raw += [
        (name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in secured.items()
    ]
    return raw


def _authenticated(authorization: bytes) -> bool:
    """As the API's ``Authorization: Bearer <key>`` check (chat.auth.ApiKeyAuth)."""
    from .models import ApiKey

    scheme, _, token = authorization.decode("latin-1").partition(" ")
    if scheme.lower() != "bearer" or not token:
        return False
    return ApiKey.objects.verify(token) is not None


def _record(ingested: Ingested, voice_note: bool | None) -> bytes:
    """The Django view's own code, from the stored object on: variant, row, answer."""
    from .api import attachment_json
    from .services import create_attachment

    attachment = create_attachment(
        ingested.file,
        original_filename=ingested.file.name or "",
        sha256=ingested.sha256,
        voice_note=voice_note,
        for_sending=True,
        stored=ingested.stored,
    )
    return attachment_json(attachment)


def _file_missing(*, body_read: bool) -> tuple[int, bytes, dict[str, str]]:
    """What the API answers a body without the ``file`` part (ninja's validation error)."""
    detail = [{"loc": ["file", FILE_FIELD], "msg": "Field required"}]  # as ninja says it
    headers = {} if body_read else {"Connection": "close"}
    return 400, _json({"error": "invalid request", "detail": detail}), headers


def _json(body: dict[str, object]) -> bytes:
    return json.dumps(body).encode()


async def _off_loop(function: Callable[..., T], *args: Any) -> T:
    """Pipeline work (hashing, disk, store writes that wait for S3) in its own pool."""
    return await asyncio.get_running_loop().run_in_executor(_INGEST, function, *args)


async def _in_thread(function: Callable[..., T], *args: Any) -> T:
    """Database work in this request's thread, its connection handed back after, as
    Django does at the end of each request."""

    def call() -> T:
        try:
            return function(*args)
        finally:
            close_old_connections()

    return await sync_to_async(call, thread_sensitive=True)()
