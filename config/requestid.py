"""One id per Django request, on every log line the request causes and in its response.

The proxy's ``X-Request-ID`` is kept when it looks like an id (so a line here can be
found from the proxy's log), else a new one is made; the response echoes it. The id
lives in a context variable: each request runs in its own asyncio task (or thread), so
the value never leaks into another request, and :class:`RequestIdFilter`, on the log
handler, copies it onto each record (``request_id`` in ``LOG_FORMAT=json``).

Only Django's requests get one. ``/media/`` and the health paths are answered before
Django (``mediacache.serving``), the L1 hits even before ASGI: reading a header and
making an id there would cost every media request, and their lines already say which
link they served (``hash``).

This module imports nothing from Django: uvicorn's supervisor process loads the filter
from the log configuration (``config.logconfig``) before any settings exist.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction

if TYPE_CHECKING:
    from django.http import HttpRequest, HttpResponseBase

HEADER = "X-Request-ID"
META_KEY = "HTTP_X_REQUEST_ID"
# What a proxy or gateway sends (UUIDs, hex, Heroku's and nginx's ids): short, no spaces
# or quotes, nothing a log parser or a response header could trip on.
_SANE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:+/=@-]{0,127}")

current: ContextVar[str | None] = ContextVar("request_id", default=None)


def accept_or_make(incoming: str | None) -> str:
    """The incoming id if it is sane, else a new random one."""
    if incoming and _SANE.fullmatch(incoming):
        return incoming
    return uuid.uuid4().hex


class RequestIdFilter(logging.Filter):
    """Adds ``request_id`` to records made while a request is handled (on the handler,
    so that records propagated from every logger pass through it)."""

    def filter(self, record: logging.LogRecord) -> bool:
        request_id = current.get()
        if request_id is not None and not hasattr(record, "request_id"):
            record.request_id = request_id
        return True


class RequestIdMiddleware:
    """First in ``MIDDLEWARE``: set before any other middleware can log, echoed on every
    response (redirects and errors included). Async under ASGI, so no thread hop.

    The id is not reset on the way out: Django logs a 4xx/5xx (``django.request``)
    after the middleware chain returns, and that line must carry it too; the next
    request (a new task, or the same thread) sets its own before anything logs.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self._acall(request)
        request_id = self._start(request)
        response: HttpResponseBase = self.get_response(request)
        response[HEADER] = request_id
        return response

    async def _acall(self, request: HttpRequest) -> HttpResponseBase:
        request_id = self._start(request)
        get_response: Callable[[HttpRequest], Awaitable[HttpResponseBase]] = self.get_response
        response = await get_response(request)
        response[HEADER] = request_id
        return response

    @staticmethod
    def _start(request: HttpRequest) -> str:
        request_id = accept_or_make(request.META.get(META_KEY))
        current.set(request_id)
        return request_id
