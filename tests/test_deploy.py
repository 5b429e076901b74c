"""``scripts/serve.sh``, production's entry point, started for real.

Two uvicorn workers with the fast-path protocol, configured only through the
environment as on a PaaS: it migrates, passes ``check --deploy``, takes an upload
behind a TLS-terminating proxy (``X-Forwarded-Proto``), serves the short link from
its caches, exposes the metrics of both workers, and stops cleanly on SIGTERM.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import FIXTURES
from tests.servers import free_port

ROOT = Path(__file__).resolve().parent.parent
PROXIED = {"X-Forwarded-Proto": "https"}


@pytest.fixture
def environment(tmp_path: Path) -> dict[str, str]:
    """A production-like environment: no DEBUG, embedded database and store."""
    keep = ("PATH", "HOME", "LANG", "TMPDIR", "VIRTUAL_ENV")
    env = {k: v for k, v in os.environ.items() if k in keep}
    env.update(
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        MEDIA_ROOT=str(tmp_path / "media"),
        MEDIACACHE_VAR_DIR=str(tmp_path / "var"),
        SECRET_KEY=secrets.token_urlsafe(40),
        ALLOWED_HOSTS="127.0.0.1",
        PUBLIC_BASE_URL="https://media.example.com",
        HOST="127.0.0.1",
        PORT=str(free_port()),
        WEB_CONCURRENCY="2",
        MIGRATE_ON_START="1",
        MEDIACACHE_READ_DOTENV="0",  # this environment only, never a developer's .env
        GRACEFUL_TIMEOUT="5",
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "metrics"),
        PYTHON=sys.executable,
    )
    return env


@pytest.fixture
def service(environment: dict[str, str], tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen]]:
    log = open(tmp_path / "serve.log", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        ["bash", str(ROOT / "scripts" / "serve.sh")],
        cwd=ROOT,
        env=environment,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{environment['PORT']}"
    deadline = time.monotonic() + 60
    try:
        while True:
            if process.poll() is not None:
                pytest.fail(f"serve.sh exited:\n{(tmp_path / 'serve.log').read_text()[-3000:]}")
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()[-3000:]
            time.sleep(0.2)
        yield url, process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        log.close()


def api_key(environment: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "manage.py", "create_api_key", "deploy-test"],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip().splitlines()[-1]


def test_serve_sh_runs_the_service_as_production_does(service, environment):
    url, process = service
    headers = {**PROXIED, "Authorization": f"Bearer {api_key(environment)}"}
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
