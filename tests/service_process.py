"""``scripts/serve.sh`` started as production starts it, in an environment of the test's own.

For the tests that need the service's real processes (several uvicorn workers, their own
database connections, signals): test_deploy, test_proxy, test_graceful_shutdown,
test_readiness, test_db_pool and test_static_and_logs start it through here.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.servers import free_port

ROOT = Path(__file__).resolve().parent.parent
# Behind a TLS-terminating proxy, as in production (SECURE_SSL_REDIRECT is on).
PROXIED = {"X-Forwarded-Proto": "https"}


def production_environment(tmp_path: Path, **overrides: str) -> dict[str, str]:
    """No DEBUG, embedded database and store under ``tmp_path / "var"`` unless overridden,
    never a developer's `.env`. The var directory exists (as ``make run`` makes it);
    nothing is inside it."""
    keep = ("PATH", "HOME", "LANG", "TMPDIR", "VIRTUAL_ENV")
    env = {k: v for k, v in os.environ.items() if k in keep}
    (tmp_path / "var").mkdir(exist_ok=True)
    env.update(
        MEDIACACHE_VAR_DIR=str(tmp_path / "var"),
        SECRET_KEY=secrets.token_urlsafe(40),
        ALLOWED_HOSTS="127.0.0.1",
        PUBLIC_BASE_URL="https://media.example.com",
        HOST="127.0.0.1",
        PORT=str(free_port()),
        WEB_CONCURRENCY="2",
        MIGRATE_ON_START="1",
        MEDIACACHE_READ_DOTENV="0",
        GRACEFUL_TIMEOUT="5",
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "metrics"),
        PYTHON=sys.executable,
    )
    env.update(overrides)
    return env


@dataclass
class Service:
    url: str
    process: subprocess.Popen[bytes]
    environment: dict[str, str]
    log: Path

    def manage(self, *args: str) -> str:
        """A management command in the service's environment; its output."""
        done = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT, env=self.environment, capture_output=True, text=True, check=True,
        )  # fmt: skip
        return done.stdout

    def api_key(self) -> str:
        return self.manage("create_api_key", "service-test").strip().splitlines()[-1]


def wait_until_answering(
    url: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 90
) -> None:
    """Until ``url``/healthz answers 200; fails with the log's tail if the process exits
    or the time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise AssertionError(
                f"{process.args[0]} exited ({process.returncode}):\n{log.read_text()[-3000:]}"
            )
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.2)


def stop(process: subprocess.Popen[bytes], grace: float = 15) -> None:
    """SIGTERM to the process group (started with ``start_new_session``), then SIGKILL."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


@contextlib.contextmanager
def serve_sh(environment: dict[str, str], log: Path) -> Iterator[Service]:
    """The service under ``scripts/serve.sh``, up once ``/healthz`` answers; stopped after."""
    with open(log, "wb") as out:
        process = subprocess.Popen(
            ["bash", str(ROOT / "scripts" / "serve.sh")],
            cwd=ROOT, env=environment, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        url = f"http://127.0.0.1:{environment['PORT']}"
        try:
            wait_until_answering(url, process, log)
            yield Service(url, process, environment, log)
        finally:
            stop(process)
