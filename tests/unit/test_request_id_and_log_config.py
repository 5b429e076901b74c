"""The request id (config/requestid.py) and the shared log configuration (config/logconfig.py).

The real service, uvicorn's supervisor included, is in tests/test_static_and_logs.py.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import re

import pytest
from django.http import HttpResponse
from django.test import RequestFactory

from config import logconfig, requestid
from mediacache.observability.logformat import JsonFormatter


@pytest.mark.parametrize(
    "incoming",
    ["abc-123", "3f2a9c1e-8d7b-4c1a-9e0f-1a2b3c4d5e6f", "Root=1-67891233-abcdef012345678912345678"],
)
def test_a_sane_incoming_id_is_kept(incoming):
    assert requestid.accept_or_make(incoming) == incoming


@pytest.mark.parametrize(
    "incoming", [None, "", "a b", "x" * 129, "ünïcode", "a\nb", "-leading", 'quote"d', "<script>"]
)
def test_anything_else_gets_a_new_id(incoming):
    made = requestid.accept_or_make(incoming)
    assert re.fullmatch(r"[0-9a-f]{32}", made)
    assert made != requestid.accept_or_make(incoming)


def record(message: str = "hello", **extra: object) -> logging.LogRecord:
    made = logging.LogRecord("chat", logging.INFO, __file__, 1, message, (), None)
    made.__dict__.update(extra)
    return made


def test_the_filter_adds_the_id_only_inside_a_request():
    def outside_any_request() -> logging.LogRecord:
        made = record()
        requestid.RequestIdFilter().filter(made)
        return made

    # A fresh context: a sync request made earlier in this thread (Django's test client)
    # leaves its id set by design, as the next request replaces it before logging.
    outside = contextvars.Context().run(outside_any_request)
    assert not hasattr(outside, "request_id")

    def inside() -> logging.LogRecord:
        requestid.current.set("abc-123")
        made = record()
        requestid.RequestIdFilter().filter(made)
        return made

    line = json.loads(JsonFormatter().format(contextvars.copy_context().run(inside)))
    assert line["request_id"] == "abc-123"
    assert requestid.current.get() != "abc-123"  # the other context never saw it


def test_uvicorns_colour_copy_of_the_message_is_left_out():
    line = json.loads(JsonFormatter().format(record("Started", color_message="\x1b[1mStarted")))
    assert line["message"] == "Started"
    assert "color_message" not in line


def test_the_async_middleware_sets_the_id_for_the_request_and_echoes_it():
    seen: list[str | None] = []

    async def view(request):
        seen.append(requestid.current.get())
        return HttpResponse("ok")

    middleware = requestid.RequestIdMiddleware(view)
    assert asyncio.iscoroutinefunction(middleware)  # no thread hop under ASGI
    request = RequestFactory().get("/api/x", HTTP_X_REQUEST_ID="abc-123")
    response = asyncio.run(middleware(request))
    assert response["X-Request-ID"] == "abc-123"
    assert seen == ["abc-123"]


def test_the_sync_middleware_makes_an_id_when_none_came():
    middleware = requestid.RequestIdMiddleware(lambda request: HttpResponse("ok"))
    response = middleware(RequestFactory().get("/"))
    assert re.fullmatch(r"[0-9a-f]{32}", response["X-Request-ID"])


def test_uvicorns_file_routes_every_uvicorn_logger_through_the_root_handler(tmp_path):
    config = logconfig.build("INFO", "json")
    assert "uvicorn" not in config["loggers"]  # Django's: would reset uvicorn.access
    assert "uvicorn.access" not in config["loggers"]
    path = logconfig.write(config, tmp_path / "logs")
    written = json.loads(path.read_text())
    assert path.suffix == ".json"  # how uvicorn tells the format
    assert written["loggers"]["uvicorn"] == {"handlers": [], "propagate": True}
    assert written["loggers"]["uvicorn.access"] == {"handlers": [], "propagate": True}
    assert written["handlers"]["console"]["filters"] == ["request_id"]
    assert written["formatters"]["json"]["()"].endswith("JsonFormatter")
    # Named by content: the next start reuses it, other settings get another file.
    assert logconfig.write(config, tmp_path / "logs") == path
    assert logconfig.write(logconfig.build("INFO", "text"), tmp_path / "logs") != path
    assert len(list((tmp_path / "logs").iterdir())) == 2


def test_a_log_config_directory_others_can_write_is_refused(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(PermissionError, match="this user alone"):
        logconfig.write(logconfig.build("INFO", "json"), shared)
