"""``make replay``: a day of a chat backend against Redis budgets of 64, 128 and 256 MB.

The workload: ``--notes`` voice notes of 20-80 KB uploaded at random times over a
day; each is fetched by Evolution within seconds of its upload (with the
``?timestamp=`` Evolution appends), and the day also has ``--refetch`` x notes
re-fetches of notes already uploaded, drawn with Zipf popularity (``--zipf``).
Time is compressed (no real waiting; nothing expires within a day anyway), but
every fetch is a real HTTP GET to the service under uvicorn/granian, with the
L1 tier off (``MEDIA_L1_BYTES=0``) so that Redis is what is measured.

The notes are stored once (S3 + database, through the service's write code,
bench/seed.py). For each budget a fresh redis-server runs with ``maxmemory`` and
``allkeys-lru``; an upload event is replayed as what the upload path does after
storing when ``MEDIA_WARM_ON_UPLOAD`` is on (``chat.services.warm``: the bytes go
to Redis). ``--no-warm`` replays without it: the Evolution fetch is then a miss.
S3 GETs are counted at the S3 endpoint (moto's recorder).

Then the same day over several replicas (``--l1-replicas``, 2): the L1 hit rate with
random against consistent-hash routing, simulated with one LRU per worker of the
configured size and lifetime fed the replayed request stream (bench/l1sim.py);
``--l1-only`` runs just that, in seconds, with no service.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import hashlib
import heapq
import os
import random
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import redis

from bench.bodies import body_for
from bench.client import Pool
from bench.infra import (
    BUCKET,
    Processes,
    S3Recorder,
    Seeded,
    Stack,
    say,
    seed_bulk,
    start_redis,
    start_s3,
    start_service,
    terminate_on_signals,
)
from bench.l1sim import L1Result, l1_table, simulate

DAY = 86_400.0
SEED = 7000


@dataclass(frozen=True, order=True)
class Event:
    at: float
    kind: str  # "upload", "evolution" or "refetch"
    index: int


@dataclass
class BudgetResult:
    budget_mb: int
    fetches: int
    hits: int
    misses: int
    s3_gets: int
    evicted: int
    used_memory: int
    resident: int
    evolution_hits: int
    seconds: float

    @property
    def hit_rate(self) -> float:
        return self.hits / self.fetches if self.fetches else 0.0


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--notes", type=int, default=7000, help="voice notes in the day (7000)")
    parser.add_argument("--min-kb", type=int, default=20, help="smallest note, KB (20)")
    parser.add_argument("--max-kb", type=int, default=80, help="largest note, KB (80)")
    parser.add_argument(
        "--refetch", type=float, default=5.0, help="Zipf re-fetches per note over the day (5)"
    )
    parser.add_argument("--zipf", type=float, default=1.0, help="Zipf exponent s (1.0)")
    parser.add_argument("--budgets", default="64,128,256", help="Redis maxmemory, MB")
    parser.add_argument("--server", default="uvicorn", choices=("uvicorn", "granian"))
    parser.add_argument("--concurrency", type=int, default=8, help="fetches in flight (8)")
    parser.add_argument("--no-warm", dest="warm", action="store_false", help="no warm on upload")
    parser.add_argument("--seed", type=int, default=SEED, help="random seed of the workload")
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--l1-replicas", type=int, default=2, help="replicas simulated (2)")
    parser.add_argument(
        "--l1-bytes", type=int, default=64 * 2**20, help="MEDIA_L1_BYTES per worker (64 MiB)"
    )
    parser.add_argument(
        "--l1-ttls",
        default="60,600,86400",
        help="MEDIA_L1_TTL values simulated, s (60: the default with Redis)",
    )
    parser.add_argument(
        "--l1-only", action="store_true", help="only the L1 routing simulation (no service)"
    )
    return parser.parse_args(argv)


def build_day(
    notes: list[Seeded], refetch_per_note: float, zipf_s: float, rng: random.Random
) -> list[Event]:
    """Uploads over a day, an Evolution fetch 1-10 s after each, Zipf re-fetches."""
    uploads = sorted(rng.uniform(0, DAY) for _ in notes)
    events = [Event(at, "upload", i) for i, at in enumerate(uploads)]
    events += [Event(at + rng.uniform(1, 10), "evolution", i) for i, at in enumerate(uploads)]
    # Popularity: a random rank per note, weight 1/rank^s; a re-fetch at time t picks
    # among the notes uploaded before t (a prefix of the upload order).
    ranks = list(range(1, len(notes) + 1))
    rng.shuffle(ranks)
    cumulative, total = [], 0.0
    for rank in ranks:
        total += 1.0 / rank**zipf_s
        cumulative.append(total)
    for _ in range(round(refetch_per_note * len(notes))):
        at = rng.uniform(uploads[0] + 10, DAY)
        uploaded = bisect.bisect_right(uploads, at - 10)  # notes at least 10 s old
        if uploaded == 0:
            continue
        pick = bisect.bisect_left(cumulative, rng.uniform(0, cumulative[uploaded - 1]))
        events.append(Event(at, "refetch", min(pick, uploaded - 1)))
    heapq.heapify(events)
    return [heapq.heappop(events) for _ in range(len(events))]


def setup_django(stack: Stack) -> None:
    """This process plays the upload side: the service's settings, L1 off."""
    os.environ.update(stack.env(MEDIA_L1_BYTES="0", MEDIA_WARM_ON_UPLOAD="1"))
    import django

    django.setup()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.quick:
        args.notes, args.budgets = 600, "4,16"
    budgets = [int(b) for b in args.budgets.split(",") if b]
    if args.l1_only:
        notes = synthetic_notes(args)
        day = build_day(notes, args.refetch, args.zipf, random.Random(args.seed))  # type: ignore[arg-type]
        print_l1(args, notes, day)
        return 0
    work = Path(tempfile.mkdtemp(prefix="mediacache-replay-"))
    procs = Processes(work)
    results: list[BudgetResult] = []
    started = time.monotonic()
    try:
        with terminate_on_signals():
            _, s3_url = start_s3(procs)
            stack = Stack(work, "", s3_url)
            stack.prepare_database()
            t0 = time.monotonic()
            notes = seed_bulk(stack, args.notes, args.min_kb * 1000, args.max_kb * 1000, args.seed)
            say(
                f"stored {len(notes)} notes in S3 and the database in {time.monotonic() - t0:.0f} s"
            )
            setup_django(stack)
            day = build_day(notes, args.refetch, args.zipf, random.Random(args.seed))
            for budget in budgets:
                results.append(replay_budget(args, procs, stack, notes, day, budget))
    except KeyboardInterrupt:
        say("interrupted: stopping everything")
        return 130
    finally:
        procs.close()
        shutil.rmtree(work, ignore_errors=True)
    print_table(args, notes, day, results)
    print_l1(args, notes, day)
    say(f"done in {time.monotonic() - started:.0f} s")
    return 0


@dataclass(frozen=True)
class SyntheticNote:
    media_hash: str
    size: int


def synthetic_notes(args: argparse.Namespace) -> list[SyntheticNote]:
    """The sizes and hashes the seeded day would have, without storing anything."""
    rng = random.Random(args.seed)
    return [
        SyntheticNote(
            f"{rng.getrandbits(128):032x}"[:22], rng.randint(args.min_kb, args.max_kb) * 1000
        )
        for _ in range(args.notes)
    ]


def print_l1(args: argparse.Namespace, notes, day: list[Event]) -> None:
    """The day over ``--l1-replicas`` replicas: random vs consistent routing, 1 and 2 workers."""
    ttls = [float(t) for t in args.l1_ttls.split(",") if t]
    results: list[L1Result] = []
    for ttl in ttls:
        for workers in (1, 2):
            for routing in ("random", "consistent"):
                results.append(
                    simulate(
                        notes, day, routing=routing, replicas=args.l1_replicas, workers=workers,
                        l1_bytes=args.l1_bytes, l1_ttl=ttl, warm=args.warm, seed=args.seed,
                    )
                )  # fmt: skip
    print()
    for i, ttl in enumerate(ttls):
        block = results[i * 4 : i * 4 + 4]
        for line in l1_table(block, args.l1_bytes, ttl):
            print(line)
        print()


def replay_budget(
    args: argparse.Namespace,
    procs: Processes,
    stack: Stack,
    notes: list[Seeded],
    day: list[Event],
    budget_mb: int,
) -> BudgetResult:
    from chat.models import MessageAttachment
    from chat.services import warm
    from django.conf import settings
    from mediacache.engine import reset_engine

    redis_proc, redis_url = start_redis(procs, f"redis-{budget_mb}mb", maxmemory=budget_mb * 2**20)
    stack.redis_url = redis_url
    service = start_service(
        procs, stack, f"replay-{budget_mb}mb", server=args.server, workers=1, MEDIA_L1_BYTES="0"
    )
    settings.MEDIACACHE["REDIS_URL"] = redis_url  # the upload side writes to this budget's Redis
    reset_engine()
    rows = {a.media_hash: a for a in MessageAttachment.objects.all()}
    recorder = S3Recorder(stack.s3_url)
    recorder.start()
    t0 = time.monotonic()
    counts = asyncio.run(_replay(args, service.port, notes, day, rows, warm))
    seconds = time.monotonic() - t0
    recorded = recorder.stop()
    s3_gets = sum(1 for r in recorded if r.get("method") == "GET" and BUCKET in r.get("url", ""))
    from mediacache.tiers.codec import redis_key  # the format the service writes

    client = redis.Redis.from_url(redis_url)
    stats, memory = client.info("stats"), client.info("memory")
    resident = sum(
        client.exists(*[redis_key(n.media_hash) for n in notes[i : i + 500]])
        for i in range(0, len(notes), 500)
    )
    client.close()
    procs.stop(service)
    procs.stop(redis_proc)
    result = BudgetResult(
        budget_mb=budget_mb,
        fetches=counts["fetches"],
        hits=counts["hits"],
        misses=counts["misses"],
        s3_gets=s3_gets,
        evicted=stats.get("evicted_keys", 0),
        used_memory=memory["used_memory"],
        resident=resident,
        evolution_hits=counts["evolution_hits"],
        seconds=seconds,
    )
    say(
        f"{budget_mb} MB: hit rate {result.hit_rate:.2%}, {s3_gets} S3 GETs, "
        f"{result.fetches} fetches in {seconds:.0f} s"
    )
    return result


async def _replay(
    args: argparse.Namespace,
    port: int,
    notes: list[Seeded],
    day: list[Event],
    rows: dict,
    warm,
) -> dict[str, int]:
    """Events in time order; fetches overlap up to ``--concurrency``, uploads do not."""
    from django.core.files.base import ContentFile

    counts = {"fetches": 0, "hits": 0, "misses": 0, "evolution_hits": 0}
    semaphore = asyncio.Semaphore(args.concurrency)
    pending: set[asyncio.Task[None]] = set()

    async with Pool(port, args.concurrency) as pool:

        async def fetch(event: Event) -> None:
            note = notes[event.index]
            query = f"?timestamp={int(event.at * 1000)}" if event.kind == "evolution" else ""
            try:
                response = await pool.get(f"/media/{note.media_hash}{query}")
            finally:
                semaphore.release()
            if response.status != 200 or len(response.body) != note.size:
                raise RuntimeError(f"{note.media_hash}: {response.status}")
            checked = event.index % 97 == 0
            if checked and hashlib.sha256(response.body).hexdigest() != note.sha256:
                raise RuntimeError(f"{note.media_hash}: wrong bytes")
            hit = response.headers.get("x-cache") == "HIT"
            counts["fetches"] += 1
            counts["hits" if hit else "misses"] += 1
            if hit and event.kind == "evolution":
                counts["evolution_hits"] += 1

        for event in day:
            if event.kind == "upload":
                if args.warm:
                    note = notes[event.index]
                    body = body_for(args.seed, note.index, note.size)
                    warm(rows[note.media_hash], ContentFile(body))
                continue
            await semaphore.acquire()
            task = asyncio.create_task(fetch(event))
            pending.add(task)
            task.add_done_callback(pending.discard)
            for done in [t for t in pending if t.done()]:
                done.result()
        await asyncio.gather(*pending)
    return counts


def print_table(
    args: argparse.Namespace, notes: list[Seeded], day: list[Event], results: list[BudgetResult]
) -> None:
    raw = sum(n.size for n in notes)
    refetches = sum(1 for e in day if e.kind == "refetch")
    print()
    print(
        f"REPLAY  {len(notes):,} voice notes ({args.min_kb}-{args.max_kb} KB, "
        f"{raw / 2**20:.0f} MiB raw), {len(notes):,} Evolution fetches + "
        f"{refetches:,} Zipf(s={args.zipf}) re-fetches; "
        f"warm on upload: {'on' if args.warm else 'off'}; L1 off; 1 {args.server} worker"
    )
    header = (
        f"{'maxmemory':>9} {'hit rate':>9} {'S3 GETs':>8} {'MISS':>7} {'evolution hits':>15} "
        f"{'evicted':>8} {'resident':>9} {'used_memory':>12} {'seconds':>8}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        print(
            f"{r.budget_mb:>6} MB {r.hit_rate:>9.2%} {r.s3_gets:>8,} {r.misses:>7,} "
            f"{r.evolution_hits / len(notes):>15.1%} {r.evicted:>8,} {r.resident:>9,} "
            f"{r.used_memory / 2**20:>9.1f} MiB {r.seconds:>8.0f}"
        )
    for r in results:
        if r.budget_mb == 256:
            mark = "ok  " if r.hit_rate >= 0.95 else "MISS"
            print(f"\nTARGET  [{mark}] hit rate >= 95% at 256 MB: {r.hit_rate:.2%}")


if __name__ == "__main__":
    raise SystemExit(main())
