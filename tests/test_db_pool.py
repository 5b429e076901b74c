"""Database connections are bounded: psycopg's pool, counted in ``pg_stat_activity``.

The service runs as production runs it (``scripts/serve.sh``, 2 workers) against a
private database on the test PostgreSQL, with the default pool size (at most 5
connections per worker) and a short ``DATABASE_POOL_MAX_IDLE`` so shrinking is quick to
see. 100 concurrent API requests (one attachment, with an API key), then 100 concurrent
lookups of unknown links (the engine's resolver, in its own thread pool), never hold
more than 10 connections; once idle the pools shrink to their minimum (1 per worker).
A pool with every connection in use is "busy" to ``/readyz``, not down; a request
waiting for a database that refuses connections fails at once.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import dj_database_url
import httpx
import psycopg
import pytest
from psycopg_pool import ConnectionPool

from config.postgresql.base import DatabaseUnreachable, FailFastPool
from mediacache.core.hashes import new_media_hash
from mediacache.observability import health
from tests.conftest import FIXTURES
from tests.servers import free_port
from tests.service_process import PROXIED, production_environment, serve_sh

WORKERS = 2
POOL_MAX = 5  # the default
CONCURRENT = 100


def _server_url(dbname: str) -> str:
    db = dj_database_url.parse(os.environ["DATABASE_URL"])  # TEST_DATABASE_URL (tests/settings)
    password = f":{db['PASSWORD']}" if db["PASSWORD"] else ""
    return f"postgres://{db['USER']}{password}@{db['HOST']}:{db['PORT'] or 5432}/{dbname}"


@pytest.fixture
def private_database() -> Iterator[tuple[str, str]]:
    """A database of this test's own (named after the test database): (name, URL)."""
    name = f"{dj_database_url.parse(os.environ['DATABASE_URL'])['NAME']}_pool"
    with psycopg.connect(_server_url("postgres"), autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name, _server_url(name)
    finally:
        with psycopg.connect(_server_url("postgres"), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class ConnectionCounter:
    """Connections to one database, sampled every 20 ms in a thread; the peak kept."""

    def __init__(self, dbname: str) -> None:
        self.dbname = dbname
        self.peak = 0
        self._admin = psycopg.connect(_server_url("postgres"), autocommit=True)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def now(self) -> int:
        row = self._admin.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s", [self.dbname]
        ).fetchone()
        assert row is not None
        return int(row[0])

    def __enter__(self) -> ConnectionCounter:
        self.peak = self.now()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        with psycopg.connect(_server_url("postgres"), autocommit=True) as own:
            while not self._stop.wait(0.02):
                row = own.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = %s", [self.dbname]
                ).fetchone()
                self.peak = max(self.peak, int(row[0]) if row else 0)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.peak = max(self.peak, self.now())

    def close(self) -> None:
        self._admin.close()


async def _concurrently(url: str, paths: list[str], headers: dict[str, str]) -> list[int]:
    limits = httpx.Limits(max_connections=len(paths), max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:
        answers = await asyncio.gather(*(client.get(path, headers=headers) for path in paths))
    return [answer.status_code for answer in answers]


def test_two_workers_hold_at_most_ten_connections_and_shrink_when_idle(
    private_database, tmp_path: Path
):
    dbname, database_url = private_database
    environment = production_environment(
        tmp_path,
        DATABASE_URL=database_url,
        WEB_CONCURRENCY=str(WORKERS),
        DATABASE_POOL_MAX_IDLE="1",  # shrink one connection a second (default 30)
        # A connection kept by a thread (the resolver's) would starve the pool: fail fast.
        DATABASE_POOL_TIMEOUT="10",
        MEDIA_NOT_FOUND_LIMIT="0",  # the unknown links below are this test's own
    )
    counter = ConnectionCounter(dbname)
    try:
        with serve_sh(environment, tmp_path / "serve.log") as service:
            headers = {**PROXIED, "Authorization": f"Bearer {service.api_key()}"}
            created = httpx.post(
                f"{service.url}/api/attachments/",
                headers=headers,
                files={"file": ("voice.ogg", (FIXTURES / "voice.ogg").read_bytes())},
                timeout=30,
            )
            assert created.status_code == 201, created.text
            attachment = f"/api/attachments/{created.json()['id']}"

            with counter:
                api = asyncio.run(_concurrently(service.url, [attachment] * CONCURRENT, headers))
            assert api == [200] * CONCURRENT
            assert counter.peak <= WORKERS * POOL_MAX
            assert counter.peak > WORKERS  # the pools grew past their minimum: it was a burst
            api_peak = counter.peak

            unknown = [f"/media/{new_media_hash()}" for _ in range(CONCURRENT)]
            with counter:
                lookups = asyncio.run(_concurrently(service.url, unknown, PROXIED))
            assert lookups == [404] * CONCURRENT  # every lookup got a connection, none failed
            assert counter.peak <= WORKERS * POOL_MAX

            # Idle: the connections above the minimum are closed (1 per worker is kept).
            deadline = time.monotonic() + 60
            while counter.now() > WORKERS:
                assert time.monotonic() < deadline, f"{counter.now()} connections still open"
                time.sleep(0.5)
            # The resolver's threads gave their connections back: the API is served at once.
            again = httpx.get(f"{service.url}{attachment}", headers=headers, timeout=10)
            assert again.status_code == 200
            print(f"peak connections: API burst {api_peak}, lookups {counter.peak}")
    finally:
        counter.close()


def test_a_pool_with_every_connection_in_use_is_busy_not_down(private_database):
    _, database_url = private_database
    pool = ConnectionPool(database_url, min_size=1, max_size=1, open=True)
    try:
        free = health._pooled_database(pool)
        assert free is not None
        assert "busy" not in free
        assert free["pool"]["max"] == 1
        with pool.connection():  # the only connection, taken
            busy = health._pooled_database(pool)
        assert busy is not None
        assert busy["busy"] is True
        assert (busy["pool"]["size"], busy["pool"]["available"]) == (1, 0)
    finally:
        pool.close()


def test_a_request_waiting_for_a_database_that_refuses_fails_at_once_not_at_the_timeout():
    """config.postgresql's pool: the queued request gets the connection error (a 503 in
    the API), not PoolTimeout after DATABASE_POOL_TIMEOUT (here a minute)."""
    closed = free_port()
    pool = FailFastPool(
        f"postgres://postgres@127.0.0.1:{closed}/none",
        min_size=0,
        max_size=2,
        timeout=60,
        open=True,  # explicit, as psycopg_pool asks (its default will change)
    )
    try:
        with pytest.raises(DatabaseUnreachable, match="cannot connect to the database"):
            pool.getconn()
    finally:
        pool.close()
