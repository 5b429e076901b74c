"""Graceful shutdown under load: ``scripts/serve.sh`` gets SIGTERM mid-download.

The service runs as production runs it (``scripts/serve.sh``, 2 uvicorn workers)
against the suite's S3 endpoint. Eight clients download objects over
``MEDIA_CACHE_MAX_OBJECT_BYTES`` (streamed from S3 as they are read) slowly, so
every one is in flight when SIGTERM arrives: at the whole process group, or at the
main process only, as Kubernetes and ``docker stop`` send it. Every download must
finish with status 200 and every byte (sha256), a new connection after the signal
must be refused, and the main process must exit within ``GRACEFUL_TIMEOUT`` (plus a
margin for the workers' own shutdown)."""

from __future__ import annotations

import hashlib
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.conftest import s3_client
from tests.servers import S3Server
from tests.service_process import PROXIED, production_environment, serve_sh

ROOT = Path(__file__).resolve().parent.parent
BUCKET = "graceful-shutdown"
GRACEFUL_TIMEOUT = 30  # s: serve.sh passes it to uvicorn's --timeout-graceful-shutdown
EXIT_MARGIN = 15  # s beyond it: the workers' lifespan shutdown and the master's joins
CACHE_CAP = 8 * 1024 * 1024  # the default MEDIA_CACHE_MAX_OBJECT_BYTES, set explicitly
SIZES = (24 * 1024 * 1024, 28 * 1024 * 1024)  # over the cap: streamed from S3, never cached
DOWNLOADS = 8
READ_CHUNK = 256 * 1024
READ_RATE = 2 * 1024 * 1024  # bytes/s per client: ~12 s per object, far past the signal
IN_FLIGHT = 2 * 1024 * 1024  # bytes each client has read before SIGTERM is sent
REFUSED_WITHIN = 5  # s after SIGTERM: the supervisor notices it within 0.5 s
# A PDF header keeps the random bytes a plain document (see tests/faults.py).
PDF_HEAD = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n"


@pytest.fixture
def environment(tmp_path: Path, s3_server: S3Server) -> dict[str, str]:
    """Production-like: no DEBUG, objects in the test S3 endpoint, an embedded database."""
    s3_client(s3_server.url).create_bucket(Bucket=BUCKET)
    return production_environment(
        tmp_path,
        S3_BUCKET=BUCKET,
        S3_ENDPOINT_URL=s3_server.url,
        S3_ACCESS_KEY_ID="testing",
        S3_SECRET_ACCESS_KEY="testing",
        S3_REGION="us-east-1",
        MEDIA_CACHE_MAX_OBJECT_BYTES=str(CACHE_CAP),
        GRACEFUL_TIMEOUT=str(GRACEFUL_TIMEOUT),
    )


@pytest.fixture
def service(environment: dict[str, str], tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen]]:
    """``scripts/serve.sh`` in its own process group, up once ``/healthz`` answers."""
    with serve_sh(environment, tmp_path / "serve.log") as running:
        yield running.url, running.process


@dataclass
class Uploaded:
    path: str  # /media/<hash>
    sha256: str
    size: int


def upload_large(url: str, environment: dict[str, str]) -> list[Uploaded]:
    """One object per size in ``SIZES``, through the upload API as a client sends it."""
    key = subprocess.run(
        [sys.executable, "manage.py", "create_api_key", "graceful-shutdown"],
        cwd=ROOT, env=environment, capture_output=True, text=True, check=True,
    ).stdout.strip().splitlines()[-1]  # fmt: skip
    headers = {**PROXIED, "Authorization": f"Bearer {key}"}
    rng = random.Random(15)  # test data, not secrets
    uploaded = []
    with httpx.Client(headers=headers, timeout=120) as client:
        for size in SIZES:
            body = PDF_HEAD + rng.randbytes(size - len(PDF_HEAD))
            created = client.post(f"{url}/api/attachments/", files={"file": ("big.pdf", body)})
            assert created.status_code == 201, created.text
            path = created.json()["short_url"].removeprefix("https://media.example.com")
            uploaded.append(Uploaded(path, hashlib.sha256(body).hexdigest(), size))
    return uploaded


@dataclass
class Download:
    """One slow client: what it got, and when it had enough bytes to be in flight."""

    expected: Uploaded
    status: int = 0
    received: int = 0
    sha256: str = ""
    error: str = ""
    in_flight: threading.Event = field(default_factory=threading.Event)

    def run(self, url: str) -> None:
        digest = hashlib.sha256()
        started = time.monotonic()
        try:
            with (
                httpx.Client(timeout=60) as client,  # its own connection
                client.stream("GET", f"{url}{self.expected.path}") as response,
            ):
                self.status = response.status_code
                for chunk in response.iter_bytes(READ_CHUNK):
                    digest.update(chunk)
                    self.received += len(chunk)
                    if self.received >= IN_FLIGHT:
                        self.in_flight.set()
                    # Read at READ_RATE: the server cannot finish before the signal.
                    time.sleep(max(0.0, started + self.received / READ_RATE - time.monotonic()))
        except httpx.HTTPError as exc:
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            self.in_flight.set()  # never leave the test waiting on a failed client
        self.sha256 = digest.hexdigest()


def refused_within(port: int, seconds: float) -> float | None:
    """Seconds until a new connection to ``port`` is refused, None if it never was.

    A connection the kernel still completes (the socket was listening) is closed at
    once without a request, and the next attempt follows shortly.
    """
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        except ConnectionRefusedError:
            return time.monotonic() - started
        except OSError:  # timed out: the backlog of a socket nobody accepts on
            pass
        time.sleep(0.1)
    return None


@pytest.mark.parametrize(
    "signal_to",
    [
        "group",  # systemd (KillMode=control-group), Heroku: every process gets SIGTERM
        "master",  # docker stop, Kubernetes: the main process only; it stops its workers
    ],
)
def test_sigterm_lets_eight_large_downloads_finish_and_refuses_new_connections(
    service, environment, tmp_path, signal_to
):
    url, process = service
    objects = upload_large(url, environment)
    assert all(o.size > CACHE_CAP for o in objects)  # streamed from S3, not cached
    downloads = [Download(objects[i % len(objects)]) for i in range(DOWNLOADS)]
    threads = [threading.Thread(target=d.run, args=(url,)) for d in downloads]
    for thread in threads:
        thread.start()
    for download in downloads:
        assert download.in_flight.wait(timeout=60), "a download never started"
    assert not any(d.error for d in downloads), [d.error for d in downloads]
    assert all(d.received < d.expected.size for d in downloads), "one finished before SIGTERM"

    # serve.sh execs uvicorn: its pid is the master's.
    if signal_to == "group":
        os.killpg(process.pid, signal.SIGTERM)
    else:
        os.kill(process.pid, signal.SIGTERM)
    signalled = time.monotonic()
    refused_after = refused_within(int(environment["PORT"]), REFUSED_WITHIN)
    assert refused_after is not None, f"new connections still accepted {REFUSED_WITHIN} s later"

    for thread in threads:
        thread.join(timeout=GRACEFUL_TIMEOUT + EXIT_MARGIN)
    for download in downloads:
        assert download.error == "", download.error
        assert download.status == 200
        assert download.received == download.expected.size
        assert download.sha256 == download.expected.sha256
    left = signalled + GRACEFUL_TIMEOUT + EXIT_MARGIN - time.monotonic()
    assert process.wait(timeout=max(1.0, left)) == 0
    print(
        f"refused {refused_after:.1f} s, exited {time.monotonic() - signalled:.1f} s after SIGTERM"
    )
    log = (tmp_path / "serve.log").read_text(errors="replace")
    assert "graceful shutdown exceeded" not in log  # nothing was cut by the timeout
