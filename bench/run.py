"""``make bench``: the serving path against nginx and the naive design, side by side.

Starts everything it measures on loopback ports of its own (redis-server, moto's
S3, nginx, the service under uvicorn and granian, the naive Django baseline under
gunicorn), seeds objects through the service's write code, and runs:

* hit throughput: every target under the same ``wrk`` settings, alternating
  (round 1 in order, round 2 reversed), best round per target in the table;
* the miss path: sequential cold GETs next to raw boto3 ``get_object`` + read;
* a stampede: 200 concurrent GETs of one cold object, S3 GETs counted by moto;
* Redis memory: 7,000 x 50 KB objects warmed through GETs, ``used_memory`` / raw;
* a large object: 200 MB downloaded by 8 clients at once, server RSS sampled;
* voice notes: transcode time per second of audio, and hit req/s while uploads
  are converted by the same service (``bench/transcoding.py``);
* the write path: uploads through the API next to raw boto3 ``put_object``
  (``bench/writepath.py``; ``--only write`` runs it alone);
* the send queue: messages per second end to end, and webhook acknowledgement
  latency (``bench/queue.py``; ``--only queue`` runs it alone).

Everything is ended and the work directory removed at the end, also on Ctrl-C.
Run ``python -m bench.run --help`` for the knobs; ``--quick`` for a short run.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import redis

from bench.bodies import body_for
from bench.client import Connection, Pool
from bench.infra import (
    BUCKET,
    SERVERS,
    ForeignLoad,
    Proc,
    Processes,
    S3Recorder,
    Seeded,
    Stack,
    Uploaded,
    WrkResult,
    percentile,
    rss_bytes,
    run_wrk,
    s3_client,
    say,
    seed_bulk,
    seed_naive,
    server_available,
    start_naive,
    start_nginx,
    start_redis,
    start_s3,
    start_service,
    terminate_on_signals,
    upload_file,
    upload_many,
    wait_for_quiet,
)
from bench.queue import queue_run
from bench.transcoding import transcode_run
from bench.writepath import write_run

HIT_BODY_BYTES = 50 * 1024
PARTS = ("hits", "miss", "stampede", "memory", "large", "transcode", "write", "queue")
SEED = 20261125


@dataclass
class Target:
    """One thing ``wrk`` is pointed at."""

    key: str
    label: str
    url: str
    proc: Proc
    server: str = ""
    runs: list[WrkResult] = field(default_factory=list)

    @property
    def best(self) -> WrkResult:
        return max(self.runs, key=lambda r: r.rps)


@dataclass
class Report:
    lines: list[str] = field(default_factory=list)
    checks: list[tuple[str, str, bool | None]] = field(default_factory=list)

    def add(self, line: str = "") -> None:
        self.lines.append(line)

    def check(self, what: str, measured: str, ok: bool | None) -> None:
        self.checks.append((what, measured, ok))


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run (10)")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of wrk warm-up (2)")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (2)")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections (16)")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds (2)")
    parser.add_argument(
        "--servers", default=",".join(SERVERS), help="ASGI servers to compare (uvicorn,granian)"
    )
    parser.add_argument("--objects", type=int, default=7000, help="Redis memory run objects")
    parser.add_argument("--misses", type=int, default=200, help="miss path samples (200)")
    parser.add_argument("--stampede", type=int, default=200, help="concurrent cold GETs (200)")
    parser.add_argument("--large-mb", type=int, default=200, help="large object size (200)")
    parser.add_argument("--large-clients", type=int, default=8, help="large object clients (8)")
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=10,
        help="seconds to wait before each run for other processes to calm down (10; 0: off)",
    )
    parser.add_argument(
        "--only", default=",".join(PARTS), help=f"parts to run, comma-separated ({','.join(PARTS)})"
    )
    parser.add_argument(
        "--database-url",
        default="",
        help="the service's database (default: a SQLite file in the work directory); an "
        "empty PostgreSQL database of your own, e.g. postgres://postgres@127.0.0.1/bench, "
        "shows production's commit cost instead of SQLite's (migrated, left with the rows)",
    )
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.warmup, args.rounds = 3, 1, 1
        args.objects, args.misses, args.large_mb = 300, 40, 32
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    for tool in ("wrk", "nginx", "redis-server"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            say(f"{tool} is missing: run `make bench` (it installs it) or apt-get install it")
            return 2
    servers = [s for s in args.servers.split(",") if s]
    for server in list(servers):
        if not server_available(server):
            say(f"{server} is not installed; skipping it (pip install -e '.[bench]')")
            servers.remove(server)
    if not servers:
        return 2
    work = Path(tempfile.mkdtemp(prefix="mediacache-bench-"))
    procs = Processes(work)
    report = Report()
    started = time.monotonic()
    try:
        with terminate_on_signals():
            run(args, servers, procs, work, report)
    except KeyboardInterrupt:
        say("interrupted: stopping everything")
        return 130
    except Exception:
        # What was measured before the failure is still worth the minutes it took.
        print("\n".join(report.lines))
        print_checks(report)
        raise
    finally:
        procs.close()
        if args.keep:
            say(f"work directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print("\n".join(report.lines))
    print_checks(report)
    say(f"done in {time.monotonic() - started:.0f} s")
    return 0


# --- the run ---------------------------------------------------------------------------


def run(
    args: argparse.Namespace, servers: list[str], procs: Processes, work: Path, report: Report
) -> None:
    say(f"work directory {work}")
    _, redis_url = start_redis(procs)
    _s3, s3_url = start_s3(procs)
    stack = Stack(work, redis_url, s3_url, database_url=args.database_url)
    stack.prepare_database()
    say("redis, S3 (moto) and the database are up")
    parts = set(args.only.split(","))
    picked = servers[0]
    if parts - {"write", "queue"}:
        picked = serving_run(args, servers, procs, work, report, stack, s3_url, parts)
    if "write" in parts:
        write_run(args, procs, stack, report)
    if "queue" in parts:
        messages = 40 if args.quick else 200
        queue_run(procs, stack, report, messages=messages, events=100 if args.quick else 500)
    environment(args, servers, picked, report)


def serving_run(
    args: argparse.Namespace,
    servers: list[str],
    procs: Processes,
    work: Path,
    report: Report,
    stack: Stack,
    s3_url: str,
    parts: set[str],
) -> str:
    """The serving parts (hits, miss, stampede, memory, large, transcode); the server picked."""
    services: dict[tuple[str, str], Proc] = {}
    for server in servers:
        services[server, "l1-1"] = start_service(
            procs, stack, f"{server}-l1-1", server=server, workers=1
        )
        services[server, "l1-2"] = start_service(
            procs, stack, f"{server}-l1-2", server=server, workers=2
        )
        services[server, "redis-1"] = start_service(
            procs, stack, f"{server}-redis-1", server=server, workers=1, MEDIA_L1_BYTES="0"
        )
    uploader = services[servers[0], "l1-2"]
    upload_url = f"http://127.0.0.1:{uploader.port}"
    say(f"services up: {', '.join(p.name for p in services.values())}")

    # Uploaded through the real API: the hit object and one cold object per stampede.
    hit_body = body_for(SEED, 0, HIT_BODY_BYTES)
    hit, *stampede_objects = upload_many(
        upload_url,
        stack.api_key,
        [hit_body] + [body_for(SEED + 1, i, HIT_BODY_BYTES) for i in range(2)],
        concurrency=2,
    )
    say(f"hit object {hit.media_hash} ({hit.mime_type}, {hit.size} B) uploaded through the API")

    count = args.objects if "memory" in parts else args.misses + 10 if "miss" in parts else 0
    bulk: list[Seeded] = []
    if count:
        t0 = time.monotonic()
        bulk = seed_bulk(stack, count, HIT_BODY_BYTES, HIT_BODY_BYTES, SEED + 2)
        say(f"seeded {len(bulk)} x 50 KB objects in {time.monotonic() - t0:.0f} s")

    picked = servers[0]
    if "hits" in parts:
        targets = hit_targets(args, servers, procs, stack, services, hit, hit_body, work)
        hit_rounds(args, targets, procs)
        picked = hit_table(args, servers, targets, report)
        for target in targets:
            if target.key in ("nginx", "naive"):
                procs.stop(target.proc)
    for (server, _kind), proc in list(services.items()):
        if server != picked:
            procs.stop(proc)

    if "miss" in parts:
        miss_run(args, stack, services[picked, "l1-1"], bulk, report)
    if "stampede" in parts:
        stampede_run(args, s3_url, services, picked, stampede_objects, stack, report)
    if "memory" in parts:
        memory_run(args, stack, services[picked, "l1-2"], bulk, report)
    if "large" in parts:
        upload_url = f"http://127.0.0.1:{services[picked, 'l1-2'].port}"
        large_run(args, stack, work, upload_url, services[picked, "l1-1"], report)
    if "transcode" in parts:
        service = services[picked, "l1-1"]
        hit_url = f"http://127.0.0.1:{service.port}/media/{hit.media_hash}"
        for _ in range(3):  # in L1 whatever ran before
            httpx.get(hit_url, timeout=10).raise_for_status()
        transcode_run(args, procs, service, hit_url, stack.api_key, report)
    for proc in services.values():
        procs.stop(proc)  # the write and queue parts measure their own services alone
    return picked


def hit_targets(
    args: argparse.Namespace,
    servers: list[str],
    procs: Processes,
    stack: Stack,
    services: dict[tuple[str, str], Proc],
    hit: Uploaded,
    body: bytes,
    work: Path,
) -> list[Target]:
    docroot = work / "www"
    (docroot / "media").mkdir(parents=True)
    (docroot / "media" / hit.media_hash).write_bytes(body)
    nginx = start_nginx(procs, docroot)
    body_path = work / "hit-body.bin"
    body_path.write_bytes(body)
    seed_naive(stack, hit.media_hash, body_path, hit.mime_type)
    naive = start_naive(procs, stack)

    path = f"/media/{hit.media_hash}"
    targets = [
        Target(
            "nginx", "nginx static file, 1 worker", f"http://127.0.0.1:{nginx.port}{path}", nginx
        )
    ]
    labels = {
        "l1-1": "L1 hit, 1 worker",
        "l1-2": "L1 hit, 2 workers",
        "redis-1": "Redis hit (L1 off), 1 worker",
    }
    for kind, label in labels.items():
        for server in servers:
            proc = services[server, kind]
            url = f"http://127.0.0.1:{proc.port}{path}"
            targets.append(Target(f"{kind}:{server}", f"{label} [{server}]", url, proc, server))
    targets.append(
        Target(
            "naive",
            "naive: sync Django view + django-redis, gunicorn 1 sync worker",
            f"http://127.0.0.1:{naive.port}{path}",
            naive,
        )
    )
    for target in targets:
        response = httpx.get(target.url, timeout=10)
        if response.status_code != 200 or response.content != body:
            raise RuntimeError(f"{target.label}: {response.status_code}, body differs")
        # Several GETs: each worker of a multi-worker target fills its own L1.
        hits = 0
        for _ in range(20):
            if target.server and httpx.get(target.url, timeout=10).headers.get("x-cache") == "HIT":
                hits += 1
            time.sleep(0.02)
        if target.server and hits == 0:
            raise RuntimeError(f"{target.label}: never answered with a hit")
    return targets


def hit_rounds(args: argparse.Namespace, targets: list[Target], procs: Processes) -> None:
    wrk = {"threads": args.threads, "connections": args.connections}
    load = ForeignLoad(procs)
    say(f"warm-up: {args.warmup} s each")
    for target in targets:
        run_wrk(target.url, seconds=args.warmup, **wrk)
    for round_no in range(args.rounds):
        order = targets if round_no % 2 == 0 else list(reversed(targets))
        for target in order:
            if args.quiet_wait > 0:
                wait_for_quiet(load, max_wait=args.quiet_wait)
            load.start()
            result = run_wrk(target.url, seconds=args.duration, **wrk)
            result.other_cores = load.stop()
            target.runs.append(result)
            say(
                f"round {round_no + 1} {target.label}: {result.rps:,.0f} req/s, "
                f"p50 {result.p50_ms:.2f} ms, p99 {result.p99_ms:.2f} ms, "
                f"other load {result.other_cores:.2f} cores"
            )


def hit_table(
    args: argparse.Namespace, servers: list[str], targets: list[Target], report: Report
) -> str:
    """The main table; returns the server picked by L1-hit req/s with one worker."""
    by_key = {t.key: t for t in targets}
    nginx, naive = by_key["nginx"].best.rps, by_key["naive"].best.rps
    report.add("")
    report.add(
        f"HIT THROUGHPUT  wrk -t{args.threads} -c{args.connections} -d{args.duration}s, "
        f"50 KB body, {args.rounds} alternating round(s), best round shown"
    )
    header = (
        f"{'target':<52} {'req/s':>9} {'p50 ms':>7} {'p99 ms':>7} {'x nginx':>8} "
        f"{'x naive':>8} {'errors':>7} {'others':>7}  rounds (req/s)"
    )
    report.add(header)
    report.add("-" * len(header))
    for t in targets:
        b = t.best
        rounds = " / ".join(f"{r.rps:,.0f}" for r in t.runs)
        report.add(
            f"{t.label:<52} {b.rps:>9,.0f} {b.p50_ms:>7.2f} {b.p99_ms:>7.2f} "
            f"{b.rps / nginx:>7.1%} {b.rps / naive:>7.1f}x {b.errors + b.non_2xx:>7} "
            f"{b.other_cores:>7.2f}  {rounds}"
        )
    kinds = ("l1-1", "l1-2", "redis-1")

    def score(server: str) -> float:
        """Geometric mean of the server's best req/s over the three Mediacache targets."""
        return statistics.geometric_mean([by_key[f"{k}:{server}"].best.rps for k in kinds])

    picked = max(servers, key=score)
    if len(servers) > 1:
        pairs = ", ".join(f"{s} {score(s):,.0f}" for s in servers)
        report.add(
            f"server picked by the geometric mean of its three Mediacache targets: {picked} "
            f"({pairs} req/s)"
        )
    l1 = by_key[f"l1-1:{picked}"].best
    red = by_key[f"redis-1:{picked}"].best
    report.check("L1 hit 1 worker >= 50% of nginx", f"{l1.rps / nginx:.1%}", l1.rps >= 0.5 * nginx)
    report.check("L1 hit 1 worker >= 15x naive", f"{l1.rps / naive:.1f}x", l1.rps >= 15 * naive)
    report.check("Redis hit 1 worker >= 4x naive", f"{red.rps / naive:.1f}x", red.rps >= 4 * naive)
    worst = max((by_key[f"{k}:{picked}"].best.p99_ms, k) for k in kinds)
    report.check(
        f"p99 of hits at {args.connections} conns <= 5 ms",
        f"{worst[0]:.2f} ms ({worst[1]}; nginx {by_key['nginx'].best.p99_ms:.2f} ms)",
        worst[0] <= 5,
    )
    return picked


def miss_run(
    args: argparse.Namespace, stack: Stack, service: Proc, bulk: list[Seeded], report: Report
) -> None:
    """Sequential cold GETs through the service next to boto3 get_object of the same objects."""
    warm = 10
    sample = bulk[: args.misses + warm]
    s3 = s3_client(stack.s3_url)
    base = f"http://127.0.0.1:{service.port}"
    service_ms: list[float] = []
    boto_ms: list[float] = []
    with httpx.Client(base_url=base, timeout=30) as client:
        for i, obj in enumerate(sample):
            steps = ("boto", "service") if i % 2 == 0 else ("service", "boto")
            for step in steps:
                started = time.perf_counter()
                if step == "boto":
                    body = s3.get_object(Bucket=BUCKET, Key=obj.key)["Body"].read()
                else:
                    response = client.get(f"/media/{obj.media_hash}")
                    body = response.content
                    if response.headers.get("x-cache") != "MISS":
                        raise RuntimeError(f"miss run: {obj.media_hash} was not a miss")
                elapsed = (time.perf_counter() - started) * 1000
                if hashlib.sha256(body).hexdigest() != obj.sha256:
                    raise RuntimeError(f"miss run: wrong bytes for {obj.media_hash} ({step})")
                if i >= warm:
                    (boto_ms if step == "boto" else service_ms).append(elapsed)
    svc_med, boto_med = statistics.median(service_ms), statistics.median(boto_ms)
    svc_p99, boto_p99 = percentile(service_ms, 99), percentile(boto_ms, 99)
    report.add("")
    report.add(f"MISS PATH  {len(service_ms)} sequential cold GETs (50 KB), alternating with boto3")
    report.add(f"{'':<40} {'median ms':>10} {'p99 ms':>8}")
    report.add(f"{'Mediacache MISS (Redis + DB + S3)':<40} {svc_med:>10.2f} {svc_p99:>8.2f}")
    report.add(f"{'raw boto3 get_object + read':<40} {boto_med:>10.2f} {boto_p99:>8.2f}")
    report.add(f"{'difference':<40} {svc_med - boto_med:>+10.2f} {svc_p99 - boto_p99:>+8.2f}")
    report.check(
        "miss median <= boto3 median + 3 ms",
        f"+{svc_med - boto_med:.2f} ms ({svc_med:.2f} vs {boto_med:.2f})",
        svc_med <= boto_med + 3,
    )


def stampede_run(
    args: argparse.Namespace,
    s3_url: str,
    services: dict[tuple[str, str], Proc],
    picked: str,
    cold: list[Uploaded],
    stack: Stack,
    report: Report,
) -> None:
    """``--stampede`` concurrent GETs of one cold object; moto counts the S3 GETs."""
    keys = stack.objects()
    recorder = S3Recorder(s3_url)
    report.add("")
    report.add(
        f"STAMPEDE  {args.stampede} concurrent GETs of one cold object, connections opened first"
    )
    for kind, obj in (("l1-1", cold[0]), ("l1-2", cold[1])):
        service = services[picked, kind]
        recorder.start()
        statuses = asyncio.run(_stampede(service.port, obj, args.stampede))
        recorded = recorder.stop()
        key = keys[obj.media_hash]
        gets = [r for r in recorded if r.get("method") == "GET" and key in r.get("url", "")]
        workers = "1 worker" if kind == "l1-1" else "2 workers"
        summary = ", ".join(f"{k}: {v}" for k, v in sorted(statuses.items()))
        report.add(f"  {workers:<10} S3 GETs: {len(gets)}   responses: {summary}")
        report.check(f"stampede, {workers}: exactly 1 S3 GET", str(len(gets)), len(gets) == 1)


async def _stampede(port: int, obj: Uploaded, count: int) -> dict[str, int]:
    async with Pool(port, count) as pool:
        # Every connection answers once first (malformed path: 404 without I/O), so
        # the real requests leave together instead of trickling in behind handshakes.
        await asyncio.gather(*(conn.get("/media/x") for conn in pool.connections))
        path = f"/media/{obj.media_hash}"
        responses = await asyncio.gather(*(conn.get(path) for conn in pool.connections))
    statuses: dict[str, int] = {}
    for response in responses:
        ok = hashlib.sha256(response.body).hexdigest() == obj.sha256
        label = f"{response.status} {response.headers.get('x-cache', '-')}"
        label += "" if ok else " WRONG BYTES"
        statuses[label] = statuses.get(label, 0) + 1
    return statuses


def memory_run(
    args: argparse.Namespace, stack: Stack, service: Proc, bulk: list[Seeded], report: Report
) -> None:
    """Flush Redis, warm every object through GETs, compare used_memory with the raw bytes.

    Agnostic of the value layout: every key under ``media:{HASH}`` (one value, or
    a head and a tail) counts toward its object.
    """
    client = redis.Redis.from_url(stack.redis_url)
    client.flushall()
    time.sleep(0.5)
    before = client.info("memory")
    t0 = time.monotonic()
    asyncio.run(_warm_all(service.port, bulk, concurrency=8))
    from mediacache.tiers.codec import redis_key  # the format the service writes

    heads = [redis_key(obj.media_hash) for obj in bulk]
    deadline = time.monotonic() + 30
    while (
        sum(client.exists(*heads[i : i + 500]) for i in range(0, len(heads), 500)) < len(heads)
        and time.monotonic() < deadline
    ):
        time.sleep(0.2)  # the fills are written in the background
    warm_s = time.monotonic() - t0
    time.sleep(0.5)
    info = client.info("memory")
    keys = [k.decode() for k in client.scan_iter(match="media:*", count=1000)]
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.strlen(key)
        pipe.memory_usage(key, samples=0)
    answers = pipe.execute()
    stored, usage = sum(answers[0::2]), sum(a or 0 for a in answers[1::2])
    client.close()
    raw = sum(obj.size for obj in bulk)
    used, base = info["used_memory"], before["used_memory"]
    report.add("")
    report.add(f"REDIS MEMORY  {len(bulk)} x 50 KB objects warmed through GETs in {warm_s:.0f} s")
    report.add(
        f"  raw body bytes {raw:,} ({raw / 2**20:.1f} MiB); {len(keys):,} keys "
        f"({len(keys) / len(bulk):.2f} per object)"
    )
    report.add(
        f"  used_memory {used:,} ({used / 2**20:.1f} MiB) = {used / raw:.3f} x raw   "
        f"(minus the empty server's {base / 2**20:.1f} MiB: {(used - base) / raw:.3f} x raw)"
    )
    report.add(
        f"  values {stored:,} B = {stored / raw:.3f} x raw (metadata); "
        f"MEMORY USAGE of the keys {usage:,} B = {usage / raw:.3f} x raw (allocator classes)"
    )
    report.check("Redis used_memory <= 1.05 x raw", f"{used / raw:.3f}x", used <= 1.05 * raw)


async def _warm_all(port: int, objects: list[Seeded], concurrency: int) -> None:
    queue: asyncio.Queue[Seeded] = asyncio.Queue()
    for obj in objects:
        queue.put_nowait(obj)

    async def worker(conn: Connection) -> None:
        while not queue.empty():
            obj = queue.get_nowait()
            response = await conn.get(f"/media/{obj.media_hash}")
            if response.status != 200 or len(response.body) != obj.size:
                raise RuntimeError(f"warm {obj.media_hash}: {response.status}")

    async with Pool(port, concurrency) as pool:
        await asyncio.gather(*(worker(conn) for conn in pool.connections))


def large_run(
    args: argparse.Namespace,
    stack: Stack,
    work: Path,
    upload_url: str,
    service: Proc,
    report: Report,
) -> None:
    """One large object (streamed, never cached) downloaded by several clients at once."""
    size = args.large_mb * 2**20
    path = work / "large.bin"
    digest = hashlib.sha256()
    with open(path, "wb") as fh:
        for i in range(0, size, 8 * 2**20):
            chunk = os.urandom(min(8 * 2**20, size - i))
            digest.update(chunk)
            fh.write(chunk)
    t0 = time.monotonic()
    obj = upload_file(upload_url, stack.api_key, path, "large.bin")
    seconds = time.monotonic() - t0
    say(f"large object ({args.large_mb} MB) uploaded through the API in {seconds:.0f} s")
    path.unlink()
    if obj.sha256 != digest.hexdigest():
        raise RuntimeError("large object: the API recorded a different sha256")

    url = f"http://127.0.0.1:{service.port}/media/{obj.media_hash}"
    httpx.head(url, timeout=30)  # resolves it once (not cached: over the size cap)
    pids = service.tree_pids()
    baseline = sum(rss_bytes(pid) for pid in pids)
    peak = baseline
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, sum(rss_bytes(pid) for pid in pids))
            time.sleep(0.02)

    results: list[tuple[int, str, int]] = []
    lock = threading.Lock()

    def download() -> None:
        sha, count = hashlib.sha256(), 0
        with httpx.stream("GET", url, timeout=600) as response:
            for chunk in response.iter_bytes(1024 * 1024):
                sha.update(chunk)
                count += len(chunk)
            status = response.status_code
        with lock:
            results.append((status, sha.hexdigest(), count))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t0 = time.monotonic()
    clients = [threading.Thread(target=download) for _ in range(args.large_clients)]
    for thread in clients:
        thread.start()
    for thread in clients:
        thread.join(timeout=900)
    elapsed = time.monotonic() - t0
    stop.set()
    sampler.join()
    identical = sum(
        1 for status, sha, count in results if status == 200 and sha == obj.sha256 and count == size
    )
    growth = peak - baseline
    report.add("")
    report.add(
        f"LARGE OBJECT  {args.large_mb} MB, {args.large_clients} concurrent downloads "
        f"in {elapsed:.1f} s ({args.large_clients * size / elapsed / 2**20:.0f} MiB/s total)"
    )
    report.add(
        f"  server RSS baseline {baseline / 2**20:.1f} MiB, peak {peak / 2**20:.1f} MiB, "
        f"growth {growth / 2**20:.1f} MiB   downloads identical (sha256): "
        f"{identical}/{args.large_clients}"
    )
    report.check(
        "large object RSS growth <= 64 MB", f"{growth / 2**20:.1f} MiB", growth <= 64 * 2**20
    )
    report.check(
        "large object bytes identical",
        f"{identical}/{args.large_clients}",
        identical == args.large_clients,
    )


def environment(args: argparse.Namespace, servers: list[str], picked: str, report: Report) -> None:
    def version(argv: list[str]) -> str:
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
            return (done.stdout + done.stderr).strip().splitlines()[0]
        except (OSError, IndexError):
            return "?"

    from importlib.metadata import version as pkg

    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    report.add("")
    report.add(
        f"MACHINE  {os.cpu_count()} cores ({cpu}), {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}"
    )
    dists = dict.fromkeys(s.split("-", 1)[0] for s in servers)  # uvicorn-asgi is uvicorn
    packages = ", ".join(f"{d} {pkg(d)}" for d in dists)
    report.add(
        f"  {packages}, gunicorn {pkg('gunicorn')}, Django {pkg('Django')}; "
        f"{version(['nginx', '-v'])}; {version(['redis-server', '--version'])[:24]}; "
        f"{version(['wrk', '--version'])[:10]}"
    )
    report.add(f"  serving runs after the table used {picked}; LOG_LEVEL=WARNING")


def print_checks(report: Report) -> None:
    print("\nTARGETS (issues 5 and 18; reported, not asserted)")
    for what, measured, ok in report.checks:
        mark = "ok  " if ok else ("MISS" if ok is False else "n/a ")
        print(f"  [{mark}] {what:<44} {measured}")


if __name__ == "__main__":
    raise SystemExit(main())
