"""``scripts/serve.sh``, production's entry point, started for real.

Two uvicorn workers with the fast-path protocol, configured only through the
environment as on a PaaS: it migrates, passes ``check --deploy``, takes an upload
behind a TLS-terminating proxy (``X-Forwarded-Proto``), serves the short link from
its caches, exposes the metrics of both workers, and stops cleanly on SIGTERM.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import FIXTURES
from tests.service_process import PROXIED, Service, production_environment, serve_sh


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    with serve_sh(production_environment(tmp_path), tmp_path / "serve.log") as running:
        yield running


def test_serve_sh_runs_the_service_as_production_does(service):
    url, process = service.url, service.process
    headers = {**PROXIED, "Authorization": f"Bearer {service.api_key()}"}
    body = (FIXTURES / "voice.ogg").read_bytes()

    # Behind the proxy: plain HTTP to the API is redirected, proxied HTTPS is served.
    plain = httpx.post(f"{url}/api/attachments/", headers={"Authorization": "x"})
    assert plain.status_code == 301
    created = httpx.post(
        f"{url}/api/attachments/", headers=headers, files={"file": ("voice.ogg", body)}
    )
    assert created.status_code == 201, created.text
    short_url = created.json()["short_url"]
    assert short_url.startswith("https://media.example.com/media/")

    # The short link, as Evolution fetches it (timestamp appended): bytes, then hits.
    path = short_url.removeprefix("https://media.example.com")
    caches = []
    for i in range(8):
        with httpx.Client() as client:  # a new connection: either worker may answer
            got = client.get(f"{url}{path}?timestamp={i}")
        assert got.status_code == 200
        assert got.content == body
        caches.append(got.headers["x-cache"])
    assert caches[0] == "MISS"
    assert "HIT" in caches

    # Both workers' counts in one scrape (multiprocess mode), from loopback.
    metrics = httpx.get(f"{url}/metrics")
    assert metrics.status_code == 200
    assert "mediacache_media_requests" in metrics.text
    # The service keeps its health paths (config/settings.py; the engine's default is none).
    ready = httpx.get(f"{url}/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["status"] == "ok"

    # SIGTERM: uvicorn stops its workers and exits 0 within the graceful timeout.
    os.killpg(process.pid, signal.SIGTERM)
    assert process.wait(timeout=30) == 0
