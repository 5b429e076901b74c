"""Static files through whitenoise and JSON logs, under ``scripts/serve.sh`` with 2 workers.

As an image runs it: ``collectstatic`` first (into a STATIC_ROOT of the test's own), then
the service with ``DEBUG`` off and ``LOG_FORMAT=json``. Hashed names are served as
immutable and gzipped, and the /ops/ page names them; every line the service writes, from
uvicorn's supervisor to Django's 404 warning, is one JSON object, and a Django request's
lines carry its request id, which its response echoes.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.service_process import PROXIED, ROOT, Service, production_environment, serve_sh

PASSWORD = "static-and-logs-test"  # a throwaway user of a throwaway database


def manage(environment: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT, env=environment, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return done.stdout


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    tmp_path = tmp_path_factory.mktemp("static-and-logs")
    environment = production_environment(
        tmp_path,
        STATIC_ROOT=str(tmp_path / "static"),
        LOG_FORMAT="json",
        # Migrated below: migrate's own progress report is not a log line.
        MIGRATE_ON_START="0",
        # Plain-HTTP test client: cookies without the Secure flag.
        SESSION_COOKIE_SECURE="0",
        CSRF_COOKIE_SECURE="0",
        DJANGO_SUPERUSER_PASSWORD=PASSWORD,
    )
    manage(environment, "collectstatic", "--noinput", "-v", "0")
    manage(environment, "migrate", "--noinput", "-v", "0")
    manage(environment, "createsuperuser", "--noinput", "--username", "ops", "--email", "o@x.io")
    with serve_sh(environment, tmp_path / "serve.log") as running:
        yield running


def manifest(service: Service) -> dict[str, str]:
    path = Path(service.environment["STATIC_ROOT"]) / "staticfiles.json"
    return json.loads(path.read_text())["paths"]


def log_in(http: httpx.Client, service: Service) -> None:
    """Through the admin's login form, as a browser behind the TLS proxy would."""
    origin = {"Origin": f"https://127.0.0.1:{service.environment['PORT']}"}
    form = http.get("/admin/login/")
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text).group(1)
    done = http.post(
        "/admin/login/?next=/ops/",
        data={"csrfmiddlewaretoken": token, "username": "ops", "password": PASSWORD},
        headers=origin,
    )
    assert done.status_code == 302, done.text[-2000:]


# --- static files ----------------------------------------------------------------------


def test_a_hashed_file_is_immutable_and_gzipped(service):
    hashed = manifest(service)["admin/css/base.css"]
    assert re.fullmatch(r"admin/css/base\.[0-9a-f]{12}\.css", hashed)
    url = f"{service.url}/static/{hashed}"

    zipped = httpx.get(url, headers={**PROXIED, "Accept-Encoding": "gzip"})
    assert zipped.status_code == 200
    assert "immutable" in zipped.headers["cache-control"]
    assert zipped.headers["content-encoding"] == "gzip"
    assert "text/css" in zipped.headers["content-type"]

    plain = httpx.get(url, headers={**PROXIED, "Accept-Encoding": "identity"})
    assert plain.status_code == 200
    assert "content-encoding" not in plain.headers
    original = Path(service.environment["STATIC_ROOT"]) / hashed
    assert plain.content == original.read_bytes()
    assert gzip.decompress((original.parent / f"{original.name}.gz").read_bytes()) == plain.content

    # What whitenoise answers besides (config/staticfiles.py reads its file in a thread).
    identity = {**PROXIED, "Accept-Encoding": "identity"}
    part = httpx.get(url, headers={**identity, "Range": "bytes=0-9"})
    assert (part.status_code, part.content) == (206, plain.content[:10])
    same = httpx.get(url, headers={**PROXIED, "If-None-Match": plain.headers["etag"]})
    assert same.status_code == 304
    head = httpx.head(url, headers=identity)
    assert head.status_code == 200
    assert head.headers["content-length"] == str(len(plain.content))


def test_the_ops_page_names_hashed_files(service):
    with httpx.Client(base_url=service.url, headers=PROXIED, timeout=30) as http:
        log_in(http, service)
        page = http.get("/ops/")
        assert page.status_code == 200
        urls = re.findall(r'(?:href|src)="(/static/[^"]+)"', page.text)
        assert len(urls) == 4, urls
        names = set(manifest(service).values())
        for url in urls:
            assert "?v=" not in url
            assert url.removeprefix("/static/") in names, url  # the hashed name
            asset = http.get(url)
            assert asset.status_code == 200, url
            assert "immutable" in asset.headers["cache-control"]


def test_swagger_ui_files_are_served_hashed(service):
    page = httpx.get(f"{service.url}/api/docs", headers=PROXIED)
    assert page.status_code == 200
    urls = re.findall(r'(?:href|src)="(/static/[^"]+)"', page.text)
    assert any(re.search(r"swagger-ui-bundle\.[0-9a-f]{12}\.js$", url) for url in urls), urls
    for url in urls:
        assert httpx.get(f"{service.url}{url}", headers=PROXIED).status_code == 200, url


# --- logs (last: it stops the service to see its shutdown lines too) --------------------


def test_every_line_is_json_and_a_request_id_follows_the_request(service):
    missing = httpx.get(
        f"{service.url}/api/no-such-route", headers={**PROXIED, "X-Request-ID": "abc-123"}
    )
    assert missing.status_code == 404
    assert missing.headers["x-request-id"] == "abc-123"
    # Not an id: a new one instead, never the header's text in the log.
    odd = httpx.get(
        f"{service.url}/api/no-such-route", headers={**PROXIED, "X-Request-ID": 'a b"c;d'}
    )
    made = odd.headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", made)
    # Redirects (plain HTTP behind the proxy) carry one too.
    assert httpx.get(f"{service.url}/admin/").headers["x-request-id"]

    os.killpg(service.process.pid, signal.SIGTERM)
    assert service.process.wait(timeout=30) == 0
    lines = service.log.read_text().splitlines()
    assert lines
    events = []
    for line in lines:
        event = json.loads(line)  # every line, whoever wrote it
        assert isinstance(event, dict), line
        events.append(event)

    messages = [(e["logger"], e["message"]) for e in events]
    assert any(m.startswith("Uvicorn running on") for _, m in messages)  # the supervisor
    started = [m for lg, m in messages if lg == "uvicorn.error" and "Started server" in m]
    assert len(started) == 2  # both workers
    assert any(m.startswith("Stopping parent process") for _, m in messages)
    ours = [e for e in events if e.get("request_id") == "abc-123"]
    assert any(
        e["logger"] == "django.request" and "/api/no-such-route" in e["message"] for e in ours
    ), ours
    assert any(e.get("request_id") == made for e in events)
    # Static files were served (the tests above) without Django's warning on sync iterators.
    assert not [e for e in events if e["logger"] == "py.warnings"]
    assert "a b" not in service.log.read_text()
