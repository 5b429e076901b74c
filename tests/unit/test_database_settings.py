"""config/settings.py's database: psycopg's pool for PostgreSQL, no persistent connections.

The settings module is imported in a child process with an environment of the test's own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
POSTGRES = "postgres://app:secret@db.example.com:5432/app"
PRINT_DATABASE = (
    "import json; from config import settings as s; d = s.DATABASES['default']; "
    "print(json.dumps({'ENGINE': d['ENGINE'], 'CONN_MAX_AGE': d['CONN_MAX_AGE'], "
    "'pool': d.get('OPTIONS', {}).get('pool')}))"
)


def database_settings(**environ: str) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ["PATH"],
        "PYTHONPATH": str(ROOT),
        "MEDIACACHE_READ_DOTENV": "0",
        "SECRET_KEY": "unit-test-secret",
        **environ,
    }
    return subprocess.run(
        [sys.executable, "-c", PRINT_DATABASE],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def database(**environ: str) -> dict[str, Any]:
    done = database_settings(**environ)
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_postgresql_gets_a_small_pool_and_no_persistent_connections():
    assert database(DATABASE_URL=POSTGRES) == {
        "ENGINE": "config.postgresql",
        "CONN_MAX_AGE": 0,
        # 2 workers hold at most 10 of a 20-connection plan; idle ones above 1 are closed.
        "pool": {"min_size": 1, "max_size": 5, "max_idle": 10.0, "timeout": 30.0},
    }


def test_the_pool_is_sized_by_the_environment():
    sized = database(
        DATABASE_URL=POSTGRES,
        DATABASE_POOL_MIN="2",
        DATABASE_POOL_MAX="8",
        DATABASE_POOL_MAX_IDLE="5",
        DATABASE_POOL_TIMEOUT="10",
    )
    assert sized["pool"] == {"min_size": 2, "max_size": 8, "max_idle": 5.0, "timeout": 10.0}


def test_pool_max_zero_turns_the_pool_off_and_conn_max_age_applies():
    """Behind PgBouncer (it pools): no pool here, persistent connections if asked for."""
    plain = database(DATABASE_URL=POSTGRES, DATABASE_POOL_MAX="0", DATABASE_CONN_MAX_AGE="60")
    assert (plain["pool"], plain["CONN_MAX_AGE"]) == (None, 60)


def test_sqlite_has_no_pool():
    embedded = database()
    assert embedded["ENGINE"] == "django.db.backends.sqlite3"
    assert (embedded["pool"], embedded["CONN_MAX_AGE"]) == (None, 0)


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        (
            {"DATABASE_CONN_MAX_AGE": "60"},
            "DATABASE_CONN_MAX_AGE=60 keeps connections open, which psycopg's pool refuses",
        ),
        (
            {"DATABASE_POOL_MIN": "6"},
            "DATABASE_POOL_MIN must be between 0 and DATABASE_POOL_MAX, got 6 and 5",
        ),
        (
            {"DATABASE_POOL_TIMEOUT": "0"},
            "DATABASE_POOL_MAX_IDLE and DATABASE_POOL_TIMEOUT must be > 0",
        ),
    ],
)
def test_a_pool_that_cannot_work_stops_start_up_naming_the_variables(environ, message):
    done = database_settings(DATABASE_URL=POSTGRES, **environ)
    assert done.returncode != 0
    assert "ImproperlyConfigured" in done.stderr
    assert message in done.stderr
