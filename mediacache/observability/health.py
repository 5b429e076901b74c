"""Health endpoints served before Django: ``/healthz`` (liveness) and ``/readyz``."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from mediacache.core.asgi_types import Receive, Scope, Send

if TYPE_CHECKING:
    from mediacache.engine import Engine

CHECK_TIMEOUT = 3.0


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


def _database() -> None:
    from django.db import close_old_connections, connection

    close_old_connections()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    finally:
        close_old_connections()


def _checks(engine: Engine) -> dict[str, Callable[[], object]]:
    checks: dict[str, Callable[[], object]] = {"database": _database, "store": engine.store.check}
    if engine.writer is not None:
        checks["redis"] = engine.writer.client.ping
    return checks


async def readiness(engine: Engine) -> tuple[bool, dict[str, Any]]:
    """Each dependency checked at once, each with its latency, bounded in time."""
    loop = asyncio.get_running_loop()

    async def run(check: Callable[[], object]) -> dict[str, Any]:
        started = time.perf_counter()
        try:
            async with asyncio.timeout(CHECK_TIMEOUT):
                await loop.run_in_executor(engine.executor, check)
        except Exception as exc:
            error = "timed out" if isinstance(exc, TimeoutError) else f"{type(exc).__name__}: {exc}"
            return {"ok": False, "error": error[:300]}
        return {"ok": True, "latency_ms": round((time.perf_counter() - started) * 1000, 2)}

    checks = _checks(engine)
    results = dict(
        zip(checks, await asyncio.gather(*(run(c) for c in checks.values())), strict=True)
    )
    down = [name for name, result in results.items() if not result["ok"]]
    return not down, {"status": "down" if down else "ok", "down": down, "checks": results}


async def readyz(engine: Engine, send: Send) -> None:
    ready, payload = await readiness(engine)
    await json_response(send, 200 if ready else 503, payload)
