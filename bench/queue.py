"""The send queue under load (``make bench BENCH_ARGS="--only queue"``).

* Messages per second end to end: N sends accepted by ``POST /api/messages/`` (8 clients
  at once), then taken by ``manage.py run_worker`` (1, then 2 worker processes), sent to
  the Evolution double (tests/evolution_double.py: the contract double, which downloads
  the short link from the service as Evolution does), recorded ``sent``. Timed from the
  first POST to the last row ``sent``; the POSTs' own latency beside it.
* Webhook acknowledgement: ``messages.update`` receipts and ``messages.upsert`` events
  with a 9.5 KB voice note inline, POSTed one after another on a keep-alive connection:
  what Evolution's webhook sender waits for (validate, store, enqueue).

On the bench's embedded database (SQLite, as ``make run``) unless ``--database-url``
names a PostgreSQL database, as production runs.
"""

from __future__ import annotations

import asyncio
import base64
import sqlite3
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx

from bench.bodies import body_for
from bench.infra import PYTHON, Proc, Processes, Stack, free_port, percentile, say, start_service

ROOT = Path(__file__).resolve().parent.parent
WEBHOOK_SECRET = "bench-webhook-secret"  # noqa: S105 (a loopback run's own)
SEED = 20261201


def queue_run(
    procs: Processes, stack: Stack, report: Any, *, messages: int = 200, events: int = 500
) -> None:
    from tests.evolution_double import EvolutionDouble

    with EvolutionDouble(api_key="bench", instance="bench") as double:
        double.auto_receipts = ()  # receipts are measured on their own below
        port = free_port()
        env = {
            "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
            "EVOLUTION_API_URL": double.url,
            "EVOLUTION_API_KEY": "bench",
            "EVOLUTION_INSTANCE": "bench",
            "EVOLUTION_WEBHOOK_SECRET": WEBHOOK_SECRET,
        }
        web = start_service(
            procs, stack, "queue-web", server="uvicorn", workers=1, port=port, **env
        )
        base = f"http://127.0.0.1:{port}"
        rows = []
        workers: list[Proc] = []
        for count in (1, 2):
            while len(workers) < count:
                workers.append(start_worker(procs, stack, f"queue-worker-{len(workers)}", env))
            time.sleep(2)  # the workers' start-up (Django, recovery) is not measured
            before = double.processed_sends
            ids = upload(base, stack.api_key, messages, seed=SEED + count)
            started = time.monotonic()
            latencies = asyncio.run(send_all(base, stack.api_key, ids, clients=8))
            accepted = time.monotonic()
            wait_sent(stack, ids, timeout=600)
            elapsed = time.monotonic() - started
            sent = double.processed_sends - before
            rows.append((count, len(ids), sent, elapsed, accepted - started, latencies))
            say(f"queue: {len(ids)} messages with {count} worker(s) in {elapsed:.1f} s")
        for worker in workers:
            procs.stop(worker)
        receipts = webhook_latency(base, receipts_payloads(double, events))
        voice = (ROOT / "tests" / "fixtures" / "voice.ogg").read_bytes()
        upserts = webhook_latency(base, upsert_payloads(voice, events // 5))
        procs.stop(web)
    report.add("")
    report.add("SEND QUEUE: API -> queue -> worker -> Evolution double (downloads the link)")
    report.add(
        f"{'workers':>8} {'messages':>9} {'sent by double':>15} {'msgs/s':>8} "
        f"{'POST p50 ms':>12} {'POST p99 ms':>12}"
    )
    for count, total, sent, elapsed, _accept, latencies in rows:
        report.add(
            f"{count:>8} {total:>9} {sent:>15} {total / elapsed:>8.1f} "
            f"{percentile(latencies, 50):>12.1f} {percentile(latencies, 99):>12.1f}"
        )
        report.check(
            f"queue: every message sent once ({count} worker(s))",
            f"{sent} sends for {total} messages",
            sent == total,
        )
    report.add("")
    report.add("WEBHOOK ACKNOWLEDGEMENT (validate, store, enqueue; one keep-alive client)")
    report.add(f"{'event':<34} {'count':>6} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for name, values in (
        ("messages.update (receipt)", receipts),
        ("messages.upsert, 9.5 KB inline", upserts),
    ):
        report.add(
            f"{name:<34} {len(values):>6} {percentile(values, 50):>8.1f} "
            f"{percentile(values, 99):>8.1f} {max(values):>8.1f}"
        )
    report.check(
        "webhook ack median < 20 ms, p99 < 100 ms (receipts)",
        f"p50 {percentile(receipts, 50):.1f} ms, p99 {percentile(receipts, 99):.1f} ms",
        percentile(receipts, 50) < 20 and percentile(receipts, 99) < 100,
    )


def start_worker(procs: Processes, stack: Stack, name: str, env: dict[str, str]) -> Proc:
    argv = [PYTHON, "manage.py", "run_worker", "--interval", "0.05"]
    return procs.start(name, argv, env=stack.env(**env))


def upload(base: str, api_key: str, count: int, *, seed: int) -> list[int]:
    """``count`` voice-note-like attachments through the upload API; their ids."""

    async def run() -> list[int]:
        headers = {"Authorization": f"Bearer {api_key}"}
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=120) as client:
            semaphore = asyncio.Semaphore(4)

            async def one(index: int) -> int:
                async with semaphore:
                    files = {"file": (f"v{index}.ogg", body_for(seed, index, 16 * 1024))}
                    response = await client.post("/api/attachments/", files=files)
                response.raise_for_status()
                return int(response.json()["id"])

            return await asyncio.gather(*(one(i) for i in range(count)))

    return asyncio.run(run())


async def send_all(base: str, api_key: str, ids: list[int], *, clients: int) -> list[float]:
    """POST one send per attachment, ``clients`` at a time; each POST's latency in ms."""
    headers = {"Authorization": f"Bearer {api_key}"}
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(
        base_url=base, headers=headers, timeout=60, limits=limits
    ) as client:
        semaphore = asyncio.Semaphore(clients)

        async def one(index: int, attachment_id: int) -> None:
            body = {"number": f"5511{index:09d}", "attachment_id": attachment_id}
            async with semaphore:
                started = time.perf_counter()
                response = await client.post(
                    "/api/messages/",
                    json=body,
                    headers={"Idempotency-Key": f"bench-{attachment_id}"},
                )
                latencies.append((time.perf_counter() - started) * 1000)
            if response.status_code != 202:
                raise RuntimeError(f"send not accepted: {response.status_code} {response.text}")

        await asyncio.gather(*(one(i, a) for i, a in enumerate(ids)))
    return latencies


def wait_sent(stack: Stack, attachment_ids: list[int], *, timeout: float) -> None:
    """Until every message of these attachments is ``sent`` (read from the database)."""
    deadline = time.monotonic() + timeout
    while True:
        counts = status_counts(stack.database_url, attachment_ids)
        if counts.get("sent", 0) == len(attachment_ids):
            return
        if set(counts) - {"queued", "sending", "sent"}:
            raise RuntimeError(f"messages ended otherwise: {counts}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"not all sent after {timeout} s: {counts}")
        time.sleep(0.05)


def status_counts(database_url: str, attachment_ids: list[int]) -> dict[str, int]:
    """Messages of these attachments by status, straight from the bench's database."""
    join = "chat_message m JOIN chat_messageattachment a ON a.message_id = m.id"
    if database_url.startswith("sqlite:///"):
        where = f"a.id IN ({','.join('?' * len(attachment_ids))})"  # placeholders only
        query = f"SELECT m.status, COUNT(*) FROM {join} WHERE {where} GROUP BY m.status"  # noqa: S608
        with closing(sqlite3.connect(database_url.removeprefix("sqlite:///"), timeout=30)) as db:
            return dict(db.execute(query, attachment_ids).fetchall())
    import psycopg

    query = f"SELECT m.status, COUNT(*) FROM {join} WHERE a.id = ANY(%s) GROUP BY m.status"  # noqa: S608
    with psycopg.connect(database_url) as db:
        return dict(db.execute(query, (attachment_ids,)).fetchall())


def receipts_payloads(double: Any, count: int) -> list[dict[str, Any]]:
    steps = ("SERVER_ACK", "DELIVERY_ACK", "READ", "PLAYED")
    return [
        double.receipt_event(f"3EB0BENCH{i // 4:08d}", steps[i % 4], "55@s.whatsapp.net")
        for i in range(count)
    ]


def upsert_payloads(voice: bytes, count: int) -> list[dict[str, Any]]:
    encoded = base64.b64encode(voice).decode()
    return [
        {
            "event": "messages.upsert",
            "instance": "bench",
            "data": {
                "key": {
                    "remoteJid": "5511988887777@s.whatsapp.net",
                    "fromMe": False,
                    "id": f"3EB0IN{i:010d}",
                },
                "message": {
                    "audioMessage": {"mimetype": "audio/ogg; codecs=opus", "ptt": True},
                    "base64": encoded,
                },
                "messageType": "audioMessage",
            },
            "date_time": "2026-12-01T10:00:00.000Z",
        }
        for i in range(count)
    ]


def webhook_latency(base: str, payloads: list[dict[str, Any]]) -> list[float]:
    latencies = []
    headers = {"X-Webhook-Secret": WEBHOOK_SECRET}
    with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
        for payload in payloads:
            started = time.perf_counter()
            response = client.post("/webhooks/evolution/", json=payload)
            latencies.append((time.perf_counter() - started) * 1000)
            if response.status_code != 202:
                raise RuntimeError(f"webhook: {response.status_code} {response.text}")
    return latencies
