"""Without Redis, the stats command and /ops/ read the same counters: the server's.

As under `make run`: the service runs in a process of its own (uvicorn, SQLite, the
local directory store, no REDIS_URL), and `manage.py media_cache_stats` runs in
another. The requests the server answered must show in the command's report, and in
/ops/stats.json, with the same numbers.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.servers import free_port

ROOT = Path(__file__).resolve().parents[1]
VOICE = ROOT / "tests" / "fixtures" / "voice.ogg"
PASSWORD = "op-password"


class Service:
    """The service and its commands, with the environment `make run` gives them."""

    def __init__(self, var_dir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        keep = {k: v for k, v in os.environ.items() if not k.startswith(("TEST_", "MEDIA"))}
        keep.pop("PROMETHEUS_MULTIPROC_DIR", None)
        self.env = {
            **keep,
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "MEDIACACHE_READ_DOTENV": "0",
            "DEBUG": "1",
            "SECRET_KEY": "stats-test-not-secret",
            "MEDIACACHE_VAR_DIR": str(var_dir),
            "DATABASE_URL": f"sqlite:///{var_dir / 'db.sqlite3'}",
            "REDIS_URL": "",
            "S3_BUCKET": "",
            "PUBLIC_BASE_URL": self.url,
            "MEDIA_STATS_INTERVAL": "0.2",
            "MEDIA_GC_FREEZE": "0",
            "DJANGO_SUPERUSER_PASSWORD": PASSWORD,
        }
        self.process: subprocess.Popen[bytes] | None = None

    def manage(self, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr.decode()[-3000:]
        return done.stdout.decode()

    def stats(self) -> dict:
        return json.loads(self.manage("media_cache_stats", "--json", "--minutes", "5"))

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                sys.executable, "-m", "uvicorn", "config.asgi:application",
                "--host", "127.0.0.1", "--port", str(self.port),
                "--http", "mediacache.fastpath:MediaHttpProtocol", "--log-level", "warning",
            ],
            cwd=ROOT,
            env=self.env,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert self.process.poll() is None, "the service exited at start-up"
            assert time.monotonic() < deadline, "the service did not start"
            time.sleep(0.2)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
            self.process = None


@pytest.fixture
def service(tmp_path) -> Iterator[Service]:
    (tmp_path / "var").mkdir()
    running = Service(tmp_path / "var")
    running.manage("migrate", "--noinput", "-v", "0")
    running.start()
    try:
        yield running
    finally:
        running.stop()


def staff_session(service: Service) -> httpx.Client:
    """Logged in through the admin's login form, as an operator would."""
    service.manage("createsuperuser", "--noinput", "--username", "op", "--email", "op@x.test")
    http = httpx.Client(base_url=service.url, timeout=30)
    page = http.get("/admin/login/")
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    login = http.post(
        "/admin/login/?next=/ops/",
        data={"csrfmiddlewaretoken": token, "username": "op", "password": PASSWORD},
    )
    assert login.status_code == 302, login.text[:1000]
    return http


def test_stats_command_sees_what_the_running_service_counted(service):
    before = service.stats()
    assert before["source"] != "redis"
    assert before["recorded"] is False  # no request yet: nothing written
    assert sum(before["requests"].values()) == 0

    key = service.manage("create_api_key", "stats-test").strip().splitlines()[-1]
    created = httpx.post(
        f"{service.url}/api/attachments/",
        files={"file": ("voice.ogg", VOICE.read_bytes())},
        headers={"Authorization": f"Bearer {key}"},
        timeout=60,
    )
    assert created.status_code == 201, created.text
    short_url = created.json()["short_url"]
    assert httpx.get(short_url).headers["x-cache"] == "MISS"
    for _ in range(3):
        assert httpx.get(short_url).headers["x-cache"] == "HIT"
    assert httpx.get(f"{service.url}/media/{'Z' * 22}").status_code == 404

    expected = {"miss": 1, "hit_l1": 3, "hit_redis": 0, "not_found": 1, "expired": 0, "error": 0}
    deadline = time.monotonic() + 30
    while True:  # the server flushes its counts every MEDIA_STATS_INTERVAL (0.2 s)
        report = service.stats()
        if report["requests"] == expected or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    try:
        assert report["requests"] == expected
        assert report["recorded"] is True
        assert report["hit_rate"] == 3 / 4
        assert report["bytes_served"] == 4 * VOICE.stat().st_size
        assert report["redis"] is None

        http = staff_session(service)
        try:
            ops = http.get("/ops/stats.json", params={"minutes": 5}).json()
        finally:
            http.close()
        assert ops["last_hour"]["requests"] == sum(expected.values())
        assert ops["last_hour"]["hits"] == 3
        assert ops["last_hour"]["misses"] == 1
        assert ops["last_hour"]["hit_rate"] == report["hit_rate"]

        table = service.manage("media_cache_stats", "--minutes", "5")
        assert "the processes on this machine (no REDIS_URL)" in table
        assert "miss=1  not_found=1" in table.replace("hit_l1=3  hit_redis=0  ", "")
    finally:
        for suffix in ("", "-wal", "-shm"):
            Path(report["source"] + suffix).unlink(missing_ok=True)
