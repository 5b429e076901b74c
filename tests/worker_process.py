"""``manage.py run_worker`` as a real process, on the live test service's database, store
and Redis, for tests that kill it (and for the bench and chaos runs)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.service_process import ROOT, production_environment


def worker_environment(tmp_path: Path, *, evolution_url: str, public_base_url: str, s3_url: str,
                       bucket: str, **overrides: str) -> dict[str, str]:  # fmt: skip
    """The settings the live test server runs with, for a worker process."""
    from django.conf import settings
    from django.db import connection

    db = connection.settings_dict
    env = production_environment(
        tmp_path,
        DATABASE_URL=f"postgres://{db['USER']}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}",
        DATABASE_POOL_MAX="0",
        REDIS_URL=settings.REDIS_URL,
        S3_BUCKET=bucket,
        S3_ENDPOINT_URL=s3_url,
        S3_ACCESS_KEY_ID="testing",
        S3_SECRET_ACCESS_KEY="testing",
        S3_REGION="us-east-1",
        PUBLIC_BASE_URL=public_base_url,
        EVOLUTION_API_URL=evolution_url,
        EVOLUTION_API_KEY=settings.EVOLUTION["API_KEY"],
        EVOLUTION_INSTANCE=settings.EVOLUTION["INSTANCE"],
        LOG_LEVEL="INFO",
    )
    env.update(overrides)
    return env


def start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "manage.py", "run_worker", "--interval", "0.05"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip


def kill(process: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
    """Signal the worker's whole process group (conversion children included) and reap it."""
    if process.poll() is None:
        os.killpg(process.pid, sig)
    process.wait(timeout=30)
