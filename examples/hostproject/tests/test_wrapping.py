"""with_media() takes only what the host gives it: /media/, the paths its settings
name, and the body limit on the routes its asgi.py lists."""

from __future__ import annotations

import gc

import httpx
from django.conf import settings

FROZEN_AT_IMPORT = gc.get_freeze_count()  # before the test server starts

LIMIT = settings.MEDIACACHE["MAX_UPLOAD_BYTES"]
OVER = b"x" * (LIMIT + 1024 * 1024)  # past the limit and its multipart allowance


def test_the_hosts_own_metrics_route_is_not_shadowed(server):
    answer = httpx.get(f"{server}/metrics")
    assert answer.status_code == 200
    assert "inbox_uploads_total" in answer.text  # the host's view answered
    assert "mediacache_media_requests_total" in answer.text  # and exports the engine's too


def test_only_the_paths_the_settings_name_are_the_engines(live):
    ready = httpx.get(f"{live}/mediacache/readyz")  # READY_PATH, renamed
    assert ready.status_code == 200, ready.text
    assert ready.json()["status"] == "ok"
    for path in ("/healthz", "/readyz"):
        assert httpx.get(f"{live}{path}").status_code == 404  # Django's: not in urls.py


def test_a_host_route_takes_a_body_over_the_engines_upload_limit(server):
    answer = httpx.post(f"{server}/inbox/import", content=OVER, timeout=30)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"bytes": len(OVER)}


def test_the_route_asgi_py_lists_gets_the_limit(server):
    answer = httpx.post(
        f"{server}/inbox/upload", files={"file": ("big.ogg", OVER, "audio/ogg")}, timeout=30
    )
    assert answer.status_code == 413
    assert answer.json() == {"error": "upload too large"}


def test_the_engine_leaves_the_hosts_collector_alone(server):
    assert httpx.get(f"{server}/metrics").status_code == 200  # the worker is serving
    # GC_FREEZE is off unless the host asks (the interpreter may freeze a few of its
    # own objects at start-up: Python 3.12 does)
    assert gc.get_freeze_count() == FROZEN_AT_IMPORT
