"""Health endpoints served before Django: ``/healthz`` (liveness) and ``/readyz`` (readiness).

``/readyz`` answers 503 only when this replica cannot serve: the database (a miss is
looked up there) or the store (the bytes) is down. Redis is a cache the service fails
open around (links are served from the store), so Redis down is 200 with
``"degraded": ["redis"]``: a Redis outage must not take every replica out of the load
balancer at once.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from mediacache.core.asgi_types import Receive, Scope, Send
from mediacache.core.details import readiness_details

if TYPE_CHECKING:
    from psycopg_pool import ConnectionPool

    from mediacache.engine import Engine

CHECK_TIMEOUT = 3.0
# Below CHECK_TIMEOUT, so a pool with no free connection is told apart from a hung check.
POOL_WAIT = 2.0
# Checks whose failure the service serves around: 200, named in "degraded".
FAIL_OPEN = frozenset({"redis"})

# What a check may add to its result beside ok/latency_ms (the pool's numbers).
Detail = dict[str, Any] | None


async def json_response(send: Send, status: int, payload: dict[str, Any]) -> None:
    body = json.dumps(payload).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def healthz(scope: Scope, receive: Receive, send: Send) -> None:
    """The process answers: no I/O, for liveness probes."""
    await json_response(send, 200, {"status": "ok"})


def _database() -> Detail:
    from django.db import close_old_connections, connection

    # Django's psycopg pool (PostgreSQL with DATABASE_POOL_MAX > 0), shared by the process.
    pool: ConnectionPool[Any] | None = getattr(connection, "pool", None)
    if pool is not None:
        return _pooled_database(pool)
    close_old_connections()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    finally:
        close_old_connections()
    return None


def _pooled_database(pool: ConnectionPool[Any]) -> Detail:
    """``SELECT 1`` on a connection of the pool, returned at once. A pool whose every
    connection is open and in use is busy, not down: the database accepted them all,
    and a replica answering many requests must not be taken out of service for it."""
    from psycopg_pool import PoolTimeout

    pool.open()  # Django opens it at the first query; this may be the first
    try:
        with pool.connection(timeout=POOL_WAIT) as conn:
            conn.execute("SELECT 1")
    except PoolTimeout:
        stats = _pool_stats(pool)
        if stats["size"] < stats["max"]:
            raise
        return {"pool": stats, "busy": True}
    return {"pool": _pool_stats(pool)}


def _pool_stats(pool: ConnectionPool[Any]) -> dict[str, int]:
    stats = pool.get_stats()
    return {
        "size": stats.get("pool_size", 0),
        "available": stats.get("pool_available", 0),
        "waiting": stats.get("requests_waiting", 0),
        "min": pool.min_size,
        "max": pool.max_size,
    }


def _store(engine: Engine) -> Callable[[], Detail]:
    def check() -> Detail:
        engine.store.check()  # made here: a storage the engine cannot use fails this check
        return None

    return check


def _checks(engine: Engine) -> dict[str, Callable[[], object]]:
    checks: dict[str, Callable[[], object]] = {"database": _database, "store": _store(engine)}
    if engine.writer is not None:
        checks["redis"] = engine.writer.client.ping
    return checks


async def readiness(engine: Engine) -> tuple[bool, dict[str, Any]]:
    """Each dependency checked at once, each with its latency, bounded in time.

    ``down``: what this replica cannot serve without (a 503); ``degraded``: what it
    serves around (:data:`FAIL_OPEN`); ``status``: ``ok``, ``degraded`` or ``down``.
    """
    loop = asyncio.get_running_loop()

    async def run(check: Callable[[], object]) -> dict[str, Any]:
        started = time.perf_counter()
        try:
            async with asyncio.timeout(CHECK_TIMEOUT):
                detail = await loop.run_in_executor(engine.executor, check)
        except Exception as exc:
            error = "timed out" if isinstance(exc, TimeoutError) else f"{type(exc).__name__}: {exc}"
            return {"ok": False, "error": error[:300]}
        result = {"ok": True, "latency_ms": round((time.perf_counter() - started) * 1000, 2)}
        return result | detail if isinstance(detail, dict) else result

    checks = _checks(engine)
    results = dict(
        zip(checks, await asyncio.gather(*(run(c) for c in checks.values())), strict=True)
    )
    failed = [name for name, result in results.items() if not result["ok"]]
    down = [name for name in failed if name not in FAIL_OPEN]
    degraded = [name for name in failed if name in FAIL_OPEN]
    status = "down" if down else "degraded" if degraded else "ok"
    payload = {"status": status, "down": down, "degraded": degraded, "checks": results}
    return not down, payload


async def readyz(engine: Engine, send: Send) -> None:
    ready, payload = await readiness(engine)
    if details := readiness_details():  # optional parts (the gateway): shown, never counted
        payload["details"] = details
    await json_response(send, 200 if ready else 503, payload)
