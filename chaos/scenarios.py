"""The fault scenarios: inject a fault, keep the load running, restore, check.

Each scenario takes a running :class:`~tests.faults.Stack` and a :class:`Timing` and
returns a :class:`Result`; an empty ``problems`` list means the service behaved.
The short core (``tests/test_faults.py``, in ``make test``) and the long runner
(``python -m chaos.run``, ``make chaos``) run this same code with different
timings, so what the table shows is what the tests assert.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import random
import secrets
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import httpx

from tests.faults import (
    API,
    BUCKET,
    ROOT,
    Corpus,
    LoadGenerator,
    NginxProxy,
    RssSampler,
    Sample,
    ServiceProcess,
    Stack,
    StoredObject,
    Summary,
    answered,
    client_for,
    failed,
    gateway_address,
    seed,
    stored_from,
    summarize,
    upload_body,
    upload_one,
)
from tests.servers import free_port

# Labels of the load's phases (a sample carries the phase it was sent in). Which
# fault a request may blame is decided by time, not label: see Window.
BEFORE, OUTAGE, AFTER = "before", "outage", "after"
INJECTING, RESTORING = "injecting", "restoring"
# Generous bounds only: they catch "waits for a dead dependency", not slowness.
MAX_FALLBACK_LATENCY = 2.0  # s: no request waits this long while Redis is down or slow
MAX_QUEUED_MEDIAN = 0.5  # s: one delayed Redis round trip; a median above it is queueing
HIT_AGAIN_WITHIN = 15.0  # s after Redis is back (breaker retry, refill), at the most
SOAK_RSS_GROWTH = 64 * 1024 * 1024  # bytes after the soak's first 20%: more looks like a leak
READ_MIX = {"hot": 60, "range": 10, "cold": 15, "big": 15}
WARM_MIX = {"hot": 85, "range": 15}  # before an outage: the cold objects stay cold
FULL_MIX = {"hot": 50, "range": 10, "cold": 20, "big": 10, "upload": 10}
SOAK_MIX = {"hot": 55, "range": 10, "cold": 20, "big": 10, "upload": 5}


@dataclass(frozen=True)
class Timing:
    """How long and how hard: the short core's defaults; :func:`long_timing` for chaos."""

    warm: float = 0.5  # s of load before the fault
    fault: float = 2.0  # s the fault lasts
    recover: float = 2.0  # s of load after the restore
    rate: float = 80.0  # requests per second, all workers together
    concurrency: int = 8
    hot: int = 15  # objects cached before the fault
    cold: int = 50  # objects never fetched before the fault
    big: int = 3  # objects over the cache cap, streamed from S3 each time
    uploads: int = 20  # the concurrent-uploads scenario (the 50 in make chaos)
    failed_writes: int = 2  # uploads per failure mode in the crash scenario
    soak: float = 0.0  # s; 0 skips the soak
    soak_rate: float = 60.0
    soak_fault: float = 5.0  # s each fault lasts during the soak
    unknown_hashes: int = 200  # behind_proxy: the flood from the gateway's address
    valid_links: int = 10  # behind_proxy: uncached links asked for right after it
    limited_lookups: float = 20.0  # behind_proxy: MEDIA_LIMITED_LOOKUPS_PER_SECOND (default)


def long_timing(soak: float) -> Timing:
    return Timing(
        warm=3, fault=15, recover=8, rate=120, concurrency=16, hot=40, cold=600, big=6,
        uploads=50, failed_writes=10, soak=soak,
        # 10,000 unknown hashes at the default 20 lookups/s would take 8 minutes.
        unknown_hashes=10_000, valid_links=50, limited_lookups=250,
    )  # fmt: skip


@dataclass(frozen=True)
class Fault:
    """One way a dependency fails, and which requests may get a 503 while it lasts."""

    label: str
    inject: Callable[[Stack], None]
    restore: Callable[[Stack], None]
    may_fail: frozenset[str] = frozenset()  # request kinds that need the dead dependency


NEEDS_STORE_OR_DB = frozenset({"cold", "big", "upload"})
FAULTS = {
    "redis_killed": Fault(
        "Redis killed (SIGKILL), restarted",
        lambda s: s.redis.kill(),  # type: ignore[union-attr]
        lambda s: s.redis.start(),  # type: ignore[union-attr]  # same port, empty
    ),
    "redis_slow": Fault(
        "Redis slow (+500 ms per chunk)",
        lambda s: s.redis_proxy.set_latency(0.5),  # type: ignore[union-attr]
        lambda s: s.redis_proxy.restore(),  # type: ignore[union-attr]
    ),
    "s3_down": Fault(
        "S3 endpoint stopped",
        lambda s: s.s3_proxy.cut(),  # type: ignore[union-attr]
        lambda s: s.s3_proxy.restore(),  # type: ignore[union-attr]
        NEEDS_STORE_OR_DB,
    ),
    "postgres_down": Fault(
        "PostgreSQL stopped",
        lambda s: s.pg.stop("fast"),  # type: ignore[union-attr]
        lambda s: s.pg.start(),  # type: ignore[union-attr]
        NEEDS_STORE_OR_DB,
    ),
}


@dataclass(frozen=True)
class Window:
    """When a fault was in place: from the start of its injection to the end of its
    restore (``settled``: fully in place, from injected to the restore starting)."""

    fault: Fault
    start: float
    end: float
    settled: tuple[float, float]

    def overlaps(self, sample: Sample) -> bool:
        """The request was in flight at some moment of the fault (it may blame it)."""
        return sample.at <= self.end and sample.at + sample.latency >= self.start

    def contains(self, sample: Sample) -> bool:
        """The whole request ran while the fault was fully in place."""
        return self.settled[0] <= sample.at and sample.at + sample.latency <= self.settled[1]


@dataclass
class Result:
    """What one scenario did and saw; ``problems`` empty means it passed."""

    name: str
    fault: str
    samples: list[Sample] = field(default_factory=list)
    windows: list[Window] = field(default_factory=list)
    rss_growth: int | None = None
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def fault_of(self, sample: Sample) -> Fault | None:
        return next((w.fault for w in self.windows if w.overlaps(sample)), None)

    def during(self, *, uploads: bool = False) -> Summary:
        """The GETs (the serving path) in flight during a fault, or the uploads."""
        return summarize(
            [
                s
                for s in self.samples
                if (s.kind == "upload") == uploads and self.fault_of(s) is not None
            ]
        )

    def inside(self) -> list[Sample]:
        """Requests that ran entirely while a fault was fully in place."""
        return [s for s in self.samples if any(w.contains(s) for w in self.windows)]

    def after(self) -> list[Sample]:
        """Requests sent once the last fault was lifted."""
        end = max((w.end for w in self.windows), default=float("inf"))
        return [s for s in self.samples if s.at > end]

    def total(self) -> Summary:
        return summarize(self.samples)

    def in_phase(self, *phases: str) -> list[Sample]:
        return [s for s in self.samples if s.phase in phases]

    def check(self, passed: bool, problem: str) -> None:
        if not passed:
            self.problems.append(problem)

    def explain(self) -> str:
        lines = [f"{self.name}: {self.fault}"]
        lines += [f"  problem: {p}" for p in self.problems]
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


@contextlib.contextmanager
def injected(
    stack: Stack,
    fault: Fault,
    result: Result,
    load: LoadGenerator | None = None,
    *,
    phase: str = OUTAGE,
    after: str = AFTER,
) -> Iterator[None]:
    """The fault in place for the body of the ``with``; always restored; its window kept."""
    start = settled = time.monotonic()
    if load is not None:
        load.phase = INJECTING
    try:
        fault.inject(stack)
        settled = time.monotonic()
        if load is not None:
            load.phase = phase
        yield
    finally:
        restoring = time.monotonic()
        if load is not None:
            load.phase = RESTORING
        fault.restore(stack)
        if load is not None:
            load.phase = after
        result.windows.append(Window(fault, start, time.monotonic(), (settled, restoring)))


def _describe(sample: Sample) -> str:
    what = sample.error or f"status {sample.status}"
    return f"{sample.kind} {sample.media_hash} in {sample.phase}: {what}"


MayFail = Callable[[Sample, Fault], bool]


def _needs_what_is_down(sample: Sample, fault: Fault) -> bool:
    return sample.kind in fault.may_fail


def check_samples(result: Result, may_fail: MayFail = _needs_what_is_down) -> None:
    """The rules every request follows: the right bytes; an answer; a 2xx, except a
    503 with ``Retry-After`` and a JSON error for a request that needs a dependency
    that was down while it was in flight (``may_fail``). Never a 500."""
    bad: list[tuple[Sample, str]] = []
    for sample in result.samples:
        fault = result.fault_of(sample)
        if sample.mismatch:
            bad.append((sample, "wrong bytes"))
        elif sample.status == 0:
            bad.append((sample, "no answer"))
        elif 200 <= sample.status < 300:
            continue
        elif sample.status == 503 and fault is not None and may_fail(sample, fault):
            if not (sample.retry_after and sample.json_error):
                bad.append((sample, "a 503 without Retry-After and a JSON error"))
        else:
            bad.append((sample, "an unexpected status"))
    for reason in sorted({r for _, r in bad}):
        which = [s for s, r in bad if r == reason]
        examples = "; ".join(_describe(s) for s in which[:3])
        result.problems.append(f"{len(which)} request(s) with {reason}: {examples}")


def _latency_note(result: Result) -> None:
    for uploads, what in ((False, "GETs"), (True, "uploads")):
        during = result.during(uploads=uploads)
        if during.requests:
            result.notes.append(
                f"{what} in flight during the fault: {during.requests}, "
                f"p50 {during.p50 * 1000:.1f} ms, p99 {during.p99 * 1000:.1f} ms, "
                f"max {during.max_latency * 1000:.1f} ms"
            )


def _load(stack: Stack, corpus: Corpus, timing: Timing, mix, seed_value: int, **kw):
    kw.setdefault("concurrency", timing.concurrency)
    kw.setdefault("rate", timing.rate)
    kw.setdefault("duration", timing.warm + timing.fault + timing.recover + 120)
    return LoadGenerator(stack, corpus, mix=mix, seed=seed_value, **kw)


def _under_fault(
    stack: Stack,
    corpus: Corpus,
    timing: Timing,
    fault: Fault,
    result: Result,
    *,
    mix: dict[str, int],
    mix_during: dict[str, int] | None = None,
    seed_value: int = 1,
) -> None:
    """Load before, during and after the fault, into ``result``; always restored."""
    load = _load(stack, corpus, timing, mix, seed_value)
    with RssSampler(stack.service) as rss, load.running():  # type: ignore[arg-type]
        time.sleep(timing.warm)
        if mix_during is not None:
            load.mix = dict(mix_during)
        with injected(stack, fault, result, load):
            time.sleep(timing.fault)
        time.sleep(timing.recover)
    result.samples = load.samples
    result.rss_growth = rss.growth()


# --- 1, 2: Redis killed, Redis slow --------------------------------------------------


def _redis_fault(stack: Stack, timing: Timing, key: str, seed_value: int) -> Result:
    fault = FAULTS[key]
    result = Result(key, fault.label)
    corpus = seed(stack, hot=timing.hot, cold=timing.cold, big=timing.big, seed=seed_value)
    _under_fault(stack, corpus, timing, fault, result, mix=READ_MIX, seed_value=seed_value)
    check_samples(result)  # Redis is never needed: always a 2xx
    during = result.during()
    result.check(
        during.max_latency < MAX_FALLBACK_LATENCY,
        f"a request took {during.max_latency:.2f} s during the fault "
        f"(bound {MAX_FALLBACK_LATENCY} s)",
    )
    result.check(
        any(s.kind in ("hot", "range") and s.x_cache == "MISS" for s in result.inside()),
        "no cached object was served from the store during the fault: was it injected?",
    )
    first_hit = _first_hit_after(result, corpus)
    result.check(
        first_hit is not None, f"no X-Cache: HIT within {HIT_AGAIN_WITHIN:.0f} s of the restore"
    )
    if first_hit is not None:
        result.notes.append(f"hits again {first_hit:.1f} s after the restore")
    _latency_note(result)
    return result


def _first_hit_after(result: Result, corpus: Corpus) -> float | None:
    """Seconds from the restore to the first HIT: from the load, else by asking (bounded).

    A restarted Redis is empty and the breaker waits ``MEDIA_REDIS_RETRY_AFTER``
    before trying it again, so the first requests after a restore are misses.
    """
    restored_at = result.windows[-1].end
    hits = [s.at + s.latency for s in result.after() if s.x_cache == "HIT"]
    if hits:
        return min(hits) - restored_at
    obj = corpus.hot[0]
    with httpx.Client(timeout=10) as client:
        while time.monotonic() < restored_at + HIT_AGAIN_WITHIN:
            response = client.get(obj.url)
            if response.headers.get("x-cache") == "HIT" and response.content == obj.body:
                return time.monotonic() - restored_at
            time.sleep(0.1)
    return None


def redis_killed(stack: Stack, timing: Timing = Timing()) -> Result:
    """Redis SIGKILLed, then restarted (empty) on the same port."""
    return _redis_fault(stack, timing, "redis_killed", 11)


def redis_slow(stack: Stack, timing: Timing = Timing()) -> Result:
    """Every Redis chunk delayed 500 ms: requests must fall back, not queue."""
    result = _redis_fault(stack, timing, "redis_slow", 12)
    during = result.during()
    result.check(
        during.p50 < MAX_QUEUED_MEDIAN,
        f"median {during.p50:.2f} s while Redis was slow: requests queue behind Redis",
    )
    return result


# --- 3, 4: S3 stopped, PostgreSQL stopped --------------------------------------------


def _dependency_down(
    stack: Stack, timing: Timing, key: str, seed_value: int
) -> tuple[Result, Corpus]:
    fault = FAULTS[key]
    result = Result(key, fault.label)
    corpus = seed(stack, hot=timing.hot, cold=timing.cold, big=timing.big, seed=seed_value)
    _under_fault(
        stack, corpus, timing, fault, result,
        mix=WARM_MIX, mix_during=FULL_MIX, seed_value=seed_value,
    )  # fmt: skip
    check_samples(result)
    result.check(
        any(s.status == 503 for s in result.inside()),
        "no request got a 503 during the outage: was it injected?",
    )
    result.check(
        any(s.kind == "upload" and s.status == 201 for s in result.after()),
        "no upload succeeded after the restore",
    )
    not_hit = [s for s in result.inside() if s.kind in ("hot", "range") and s.x_cache != "HIT"]
    result.check(not not_hit, f"{len(not_hit)} cached object(s) not a HIT during the outage")
    _latency_note(result)
    return result, corpus


def s3_down(stack: Stack, timing: Timing = Timing()) -> Result:
    """S3 unreachable: cached objects still 200 HIT; the rest 503; nothing bad cached."""
    result, corpus = _dependency_down(stack, timing, "s3_down", 13)
    # Nothing bad was cached: every object refused during the outage is served now.
    known = corpus.everything()
    refused = {s.media_hash for s in result.samples if s.status == 503 and s.media_hash in known}
    with httpx.Client(timeout=30) as client:
        for media_hash in sorted(refused):
            obj = known[media_hash]
            sample = Sample(time.monotonic(), "recheck", "recheck", 0, 0.0, media_hash=media_hash)
            try:
                answered(sample, response := client.get(obj.url))
                sample.mismatch = response.content != obj.body
            except httpx.HTTPError as exc:
                failed(sample, exc)
            result.samples.append(sample)
    rechecked = result.in_phase("recheck")
    result.check(
        all(s.status == 200 and not s.mismatch for s in rechecked),
        "an object refused during the outage is not served right after it",
    )
    result.notes.append(f"{len(rechecked)} object(s) refused during the outage, all served after")
    return result


def postgres_down(stack: Stack, timing: Timing = Timing()) -> Result:
    """PostgreSQL stopped: cached objects keep being served; uploads 503 with JSON."""
    result, _ = _dependency_down(stack, timing, "postgres_down", 14)
    result.check(
        any(s.kind == "upload" and s.status == 503 for s in result.inside()),
        "no upload was refused with a 503 while PostgreSQL was down",
    )
    return result


# --- 5: a crash between the store and the database -----------------------------------

_TRIGGER = "chaos_fault"


def _trigger(stack: Stack, body: str) -> None:
    """A BEFORE INSERT trigger on the attachments table: the fault lives in the database."""
    with stack.db() as conn:
        conn.execute(
            "CREATE OR REPLACE FUNCTION chaos_fault() RETURNS trigger LANGUAGE plpgsql"
            f" AS $$ BEGIN {body} END $$"
        )
        conn.execute(
            f"CREATE TRIGGER {_TRIGGER} BEFORE INSERT ON chat_messageattachment"
            " FOR EACH ROW EXECUTE FUNCTION chaos_fault()"
        )


def _drop_trigger(stack: Stack) -> None:
    with stack.db() as conn:
        conn.execute(f"DROP TRIGGER IF EXISTS {_TRIGGER} ON chat_messageattachment")
        conn.execute("DROP FUNCTION IF EXISTS chaos_fault()")


DB_WRITE_FAILS = Fault(
    "the attachment INSERT fails (disk full)",
    lambda s: _trigger(s, "RAISE EXCEPTION 'chaos: disk full' USING ERRCODE = 'disk_full';"),
    _drop_trigger,
    frozenset({"upload"}),
)
STORE_WRITE_FAILS = Fault(
    "S3 unreachable for the upload",
    FAULTS["s3_down"].inject,
    FAULTS["s3_down"].restore,
    frozenset({"upload"}),  # cached objects are still served: only uploads may fail
)


def _upload_now(client: httpx.Client, body: bytes, phase: str) -> Sample:
    sample = Sample(time.monotonic(), phase, "upload", 0, 0.0)
    try:
        response = client.post(API, files={"file": ("blob.bin", body)})
    except httpx.HTTPError as exc:
        return failed(sample, exc)
    answered(sample, response)
    if response.status_code == 201:
        sample.media_hash = response.json()["media_hash"]
    return sample


def _failed_writes(
    stack: Stack, result: Result, rng: random.Random, timing: Timing, phase: str
) -> None:
    """Uploads while a write fails: each a 503 with JSON; no row, no object left."""
    keys, rows = stack.object_keys(), stack.attachment_keys()
    headers = {"Authorization": f"Bearer {stack.api_key}"}
    with httpx.Client(base_url=stack.url, headers=headers, timeout=60) as client:
        samples = [
            _upload_now(client, upload_body(rng, 2048, 16 * 1024), phase)
            for _ in range(timing.failed_writes)
        ]
    result.samples += samples
    result.check(all(s.status == 503 for s in samples), f"{phase}: an upload was not a 503")
    orphans = stack.object_keys() - keys
    result.check(not orphans, f"{phase}: object(s) left without a row: {sorted(orphans)[:3]}")
    result.check(stack.attachment_keys() == rows, f"{phase}: a row was written")


def _crash_mid_upload(stack: Stack, result: Result, rng: random.Random) -> set[str]:
    """SIGKILL the server after the object is stored, before its row is committed."""
    keys = stack.object_keys()
    _trigger(stack, "PERFORM pg_sleep(1.5); RETURN NEW;")
    headers = {"Authorization": f"Bearer {stack.api_key}"}
    sample = Sample(time.monotonic(), "crash", "upload", 0, 0.0)

    def upload() -> None:
        with httpx.Client(base_url=stack.url, headers=headers, timeout=30) as client:
            try:
                body = upload_body(rng, 4096, 4096)
                answered(sample, client.post(API, files={"file": ("b.bin", body)}))
            except httpx.HTTPError as exc:
                failed(sample, exc)

    thread = threading.Thread(target=upload, name="crashing-upload")
    try:
        thread.start()
        # The object is stored before the row: once its INSERT runs (held by the
        # trigger), the crash lands between the two.
        deadline = time.monotonic() + 15
        while not _inserting(stack) and time.monotonic() < deadline:
            time.sleep(0.02)
        stack.service.crash()  # type: ignore[union-attr]
        thread.join(timeout=30)
    finally:
        _drop_trigger(stack)  # waits for the sleeping INSERT, which then rolls back
        if stack.service.process is None:  # type: ignore[union-attr]
            stack.service.start()  # type: ignore[union-attr]
    result.check(sample.status != 201, "the crash came too late: the upload had succeeded")
    result.notes.append(f"upload cut by the crash: {sample.error or sample.status}")
    return stack.object_keys() - keys


def _inserting(stack: Stack) -> bool:
    """An attachment INSERT is running in the private database right now."""
    with stack.db() as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE state = 'active'"
            " AND query ILIKE 'INSERT INTO %%chat_messageattachment%%'"
        ).fetchone()
    return bool(row and row[0])


def crash_between_store_and_db(stack: Stack, timing: Timing = Timing()) -> Result:
    """A failed database write leaves no object; a failed store write leaves no row;
    a real crash in between leaves an orphan that the sweeper finds and deletes."""
    result = Result("crash", "Crash between store and database")
    rng = random.Random(15)  # noqa: S311 - reproducible test data, not secrets
    corpus = seed(stack, hot=timing.hot, cold=0, big=0, seed=15)
    load = _load(stack, corpus, timing, WARM_MIX, 15, rate=timing.rate / 2)
    with load.running():
        for fault, phase in ((DB_WRITE_FAILS, "db_write_fails"), (STORE_WRITE_FAILS, "store")):
            with injected(stack, fault, result, load, phase=phase):
                _failed_writes(stack, result, rng, timing, phase)
    result.samples += load.samples
    check_samples(result)
    crashed = _crash_mid_upload(stack, result, rng)  # restarts the server: no RSS growth
    result.check(len(crashed) == 1, f"the crash left {len(crashed)} new object(s), expected 1")
    result.check(not crashed & stack.attachment_keys(), "the crashed upload's row was committed")
    _sweep(stack, result, crashed)
    _latency_note(result)
    return result


def _sweep(stack: Stack, result: Result, crashed: set[str]) -> None:
    """The sweeper lists the orphans, then deletes them and only them (sparing young
    objects under the default ``--min-age`` is tests/test_sweeper.py's job)."""
    planted = f"chat/2020/01/01/{uuid.uuid4().hex}.bin"  # a day long past: surely old
    stack.s3().put_object(Bucket=BUCKET, Key=planted, Body=b"orphan")
    orphans = crashed | {planted}
    sweep = ("sweep_orphan_objects", "--skip-checks", "--min-age", "0")
    listed = stack.manage(*sweep, "--dry-run").stdout
    result.check(all(k in listed for k in orphans), f"the dry run did not list {orphans}")
    result.check(orphans <= stack.object_keys(), "the dry run deleted something")
    stack.manage(*sweep)
    left = stack.object_keys()
    result.check(not orphans & left, f"the sweeper left orphans: {sorted(orphans & left)}")
    missing = stack.attachment_keys() - left
    result.check(not missing, f"the sweeper deleted objects that have rows: {sorted(missing)[:3]}")
    deleted = len(orphans - left)
    result.notes.append(f"the sweeper deleted {deleted} orphan(s) of {len(orphans)}")


# --- 6: many uploads at once ---------------------------------------------------------

BURST = Fault("upload burst", lambda s: None, lambda s: None)  # nothing may fail


async def _upload_all(
    stack: Stack, bodies: list[bytes]
) -> list[tuple[Sample, StoredObject | None]]:
    async with client_for(stack, len(bodies)) as client:

        async def one(body: bytes) -> tuple[Sample, StoredObject | None]:
            sample = Sample(time.monotonic(), OUTAGE, "upload", 0, 0.0)
            try:
                response = await upload_one(client, body)
            except httpx.HTTPError as exc:
                return failed(sample, exc), None
            answered(sample, response)
            if response.status_code != 201:
                return sample, None
            created = stored_from(response, body)
            sample.media_hash = created.media_hash
            sample.mismatch = created.sha256 != hashlib.sha256(body).hexdigest()
            return sample, created

        return await asyncio.gather(*(one(b) for b in bodies))


async def _fetch_all(objects: list[StoredObject]) -> list[Sample]:
    async with httpx.AsyncClient(timeout=60) as client:

        async def one(obj: StoredObject) -> Sample:
            sample = Sample(time.monotonic(), AFTER, "cold", 0, 0.0, media_hash=obj.media_hash)
            try:
                response = await client.get(obj.url)
            except httpx.HTTPError as exc:
                return failed(sample, exc)
            answered(sample, response)
            sample.mismatch = response.content != obj.body
            return sample

        return await asyncio.gather(*(one(o) for o in objects))


def concurrent_uploads(stack: Stack, timing: Timing = Timing()) -> Result:
    """N uploads at once: N rows, N hashes, N objects, each served byte-identical."""
    n = timing.uploads
    result = Result("concurrent_uploads", f"{n} concurrent uploads")
    rng = random.Random(16)  # noqa: S311 - reproducible test data, not secrets
    bodies = [upload_body(rng, 2048, 32 * 1024) for _ in range(n)]
    corpus = seed(stack, hot=timing.hot, cold=0, big=0, seed=16)
    load = _load(stack, corpus, timing, WARM_MIX, 16, rate=timing.rate / 2)
    with (
        RssSampler(stack.service) as rss,  # type: ignore[arg-type]
        load.running(),
        injected(stack, BURST, result, load),
    ):
        uploaded = asyncio.run(_upload_all(stack, bodies))
    result.rss_growth = rss.growth()
    result.samples = [s for s, _ in uploaded] + load.samples
    created = [obj for _, obj in uploaded if obj is not None]
    result.check(len(created) == n, f"{n - len(created)} of {n} uploads failed")
    with stack.db() as conn:
        rows = conn.execute(
            "SELECT media_hash, file, sha256, size FROM chat_messageattachment"
            " WHERE media_hash = ANY(%s)",
            ([o.media_hash for o in created],),
        ).fetchall()
    result.check(len(rows) == n, f"{len(rows)} rows for {n} uploads")
    result.check(len({r[0] for r in rows}) == n, "two uploads share a hash")
    result.check(len({r[1] for r in rows}) == n, "two uploads share an object key")
    by_hash = {o.media_hash: o for o in created}
    wrong = [r[0] for r in rows if r[2] != by_hash[r[0]].sha256 or r[3] != by_hash[r[0]].size]
    result.check(not wrong, f"rows with the wrong sha256 or size: {wrong[:3]}")
    s3 = stack.s3()
    sizes = {r[1]: s3.head_object(Bucket=BUCKET, Key=r[1])["ContentLength"] for r in rows}
    result.check(
        all(sizes[r[1]] == r[3] for r in rows), "a stored object's size differs from its row"
    )
    fetched = asyncio.run(_fetch_all(created))
    result.samples += fetched
    check_samples(result)
    latencies = sorted(s.latency for s, _ in uploaded)
    result.notes.append(
        f"{n} uploads at once: slowest {latencies[-1]:.2f} s, median {latencies[n // 2]:.2f} s"
    )
    _latency_note(result)
    return result


# --- 7: behind a reverse proxy -------------------------------------------------------

PROXY_NOT_FOUND_LIMIT = 60  # MEDIA_NOT_FOUND_LIMIT: the default, set explicitly
PROXY_NOT_FOUND_WINDOW = 60  # s, MEDIA_NOT_FOUND_WINDOW: likewise
LIMITED_FOR_AT_LEAST = 10  # s of the limit left when the valid links are asked for
FLOOD_CONCURRENCY = 32
# Headers a client forges to look like loopback; nginx passes them on, as proxies do.
FORGED = (
    {"X-Forwarded-For": "127.0.0.1"},
    {"X-Forwarded-For": "127.0.0.1, 127.0.0.1"},
    {"X-Forwarded-For": "::1"},
    {"Forwarded": "for=127.0.0.1"},
    {"X-Real-IP": "127.0.0.1"},
)
FLOOD = Fault("unknown hashes from the gateway's address", lambda s: None, lambda s: None)


@dataclass
class Proxied:
    """The service configured as behind a proxy, nginx in front of it, and the
    address the gateway sends from."""

    service: ServiceProcess
    nginx: NginxProxy
    gateway: str


@contextlib.contextmanager
def _behind_nginx(stack: Stack, timing: Timing) -> Iterator[Proxied]:
    """The service in a process of its own on the stack's PostgreSQL, Redis and S3,
    set up as ``scripts/serve.sh`` sets it up behind a proxy on the same machine (its
    trusted proxy, for the engine and for uvicorn) and, as in issue 15, without a
    ``METRICS_TOKEN``; nginx in front. Both ended on the way out, also on failure."""
    port = free_port()
    env = {
        **stack.env,
        "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
        "TRUSTED_PROXIES": "127.0.0.1/32",  # nginx, on this machine
        "FORWARDED_ALLOW_IPS": "127.0.0.1/32",  # uvicorn's copy, as scripts/serve.sh passes it
        "MEDIA_NOT_FOUND_LIMIT": str(PROXY_NOT_FOUND_LIMIT),
        "MEDIA_NOT_FOUND_WINDOW": str(PROXY_NOT_FOUND_WINDOW),
        "MEDIA_LIMITED_LOOKUPS_PER_SECOND": str(timing.limited_lookups),
    }
    service = ServiceProcess(env, port, os.path.join(stack.tmp, "proxied-service.log"))
    nginx = NginxProxy(port)
    try:
        service.start()
        nginx.start()
        yield Proxied(service, nginx, gateway_address())
    finally:
        nginx.stop()
        service.stop()


def _get(
    client: httpx.Client, kind: str, path: str, phase: str, **kw
) -> tuple[Sample, httpx.Response | None]:
    sample = Sample(time.monotonic(), phase, kind, 0, 0.0, media_hash=path.rsplit("/", 1)[-1])
    try:
        response = client.get(path, **kw)
    except httpx.HTTPError as exc:
        return failed(sample, exc), None
    return answered(sample, response), response


def _metrics_forged(result: Result, clients: list[httpx.Client], phase: str) -> None:
    """``/metrics`` through the proxy with every forged header (no token is set): 403."""
    samples = [
        _get(client, "metrics", "/metrics", phase, headers=headers)[0]
        for client in clients
        for headers in FORGED
    ]
    result.samples += samples
    opened = sorted({str(s.status or s.error) for s in samples if s.status != 403})
    result.check(not opened, f"{phase}: /metrics with a forged header answered {', '.join(opened)}")


async def _flood(url: str, source: str, count: int, phase: str) -> list[Sample]:
    """``count`` hashes nobody made, sent from ``source`` through the proxy, each with a
    forged ``X-Forwarded-For`` (loopback, or another address every time)."""
    rng = random.Random(18)  # noqa: S311 - forged addresses, not secrets
    pending = [secrets.token_urlsafe(16) for _ in range(count)]
    samples: list[Sample] = []
    limits = httpx.Limits(
        max_connections=FLOOD_CONCURRENCY, max_keepalive_connections=FLOOD_CONCURRENCY,
        keepalive_expiry=2.0,
    )  # fmt: skip
    transport = httpx.AsyncHTTPTransport(local_address=source, limits=limits)
    async with httpx.AsyncClient(
        base_url=url, transport=transport, timeout=httpx.Timeout(300, connect=5)
    ) as client:

        async def worker() -> None:
            while pending:
                media_hash = pending.pop()
                forged = "127.0.0.1" if rng.random() < 0.5 else f"203.0.113.{rng.randrange(256)}"
                sample = Sample(time.monotonic(), phase, "unknown", 0, 0.0, media_hash=media_hash)
                try:
                    response = await client.get(
                        f"/media/{media_hash}", headers={"X-Forwarded-For": forged}
                    )
                except httpx.HTTPError as exc:
                    samples.append(failed(sample, exc))
                    continue
                samples.append(answered(sample, response))

        await asyncio.gather(*(worker() for _ in range(FLOOD_CONCURRENCY)))
    return samples


def _check_flood(result: Result, flood: list[Sample], seconds: float) -> None:
    """Only 404s and 429s; no more 404s than one client's budget (no forged header made
    the flood several clients: each would have had a budget of its own); and the
    limiter did engage."""
    counts = Counter(s.status for s in flood)
    other = [s for s in flood if s.status not in (404, 429)]
    result.check(
        not other,
        f"{len(other)} unknown hash(es) answered other than 404/429: "
        + "; ".join(_describe(s) for s in other[:3]),
    )
    result.check(all(s.retry_after for s in flood if s.status == 429), "a 429 without Retry-After")
    # Per window: the limit, plus the requests already looking up when it was reached.
    windows = int(seconds // PROXY_NOT_FOUND_WINDOW) + 1
    budget = (PROXY_NOT_FOUND_LIMIT + FLOOD_CONCURRENCY) * windows
    result.check(
        counts[404] <= budget,
        f"{counts[404]} unknown hashes got a 404 (one client's budget: {budget}): did the "
        "forged X-Forwarded-For values count as other clients?",
    )
    result.check(counts[429] > 0, "no 429 in the flood: the limiter never engaged")
    result.notes.append(
        f"{len(flood)} unknown hashes in {seconds:.1f} s ({len(flood) / seconds:.0f}/s): "
        f"{counts[404]} answered 404, {counts[429]} 429"
    )


def _make_limited(client: httpx.Client, result: Result) -> bool:
    """The gateway's address limited, with at least ``LIMITED_FOR_AT_LEAST`` s of it
    left: unknown hashes until a 429 says so (its ``Retry-After``)."""
    for _ in range(3 * PROXY_NOT_FOUND_LIMIT):
        sample, response = _get(client, "unknown", f"/media/{secrets.token_urlsafe(16)}", "probe")
        result.samples.append(sample)
        if response is None or sample.status not in (404, 429):
            return False
        if sample.status == 429:
            left = int(response.headers.get("retry-after", "0"))
            if left >= LIMITED_FOR_AT_LEAST:
                return True
            time.sleep(left + 0.5)  # let it lapse: the next 404s start a full window
    return False


def _valid_links(client: httpx.Client, result: Result, objects: list[StoredObject]) -> list[Sample]:
    """Each uncached link from the limited address: 200, every byte, a miss."""
    samples = []
    for obj in objects:
        sample, response = _get(client, "cold", f"/media/{obj.media_hash}", "valid")
        if response is not None and response.status_code == 200:
            sample.mismatch = response.content != obj.body
        samples.append(sample)
    result.samples += samples
    refused = [s for s in samples if s.status == 429]
    result.check(not refused, f"{len(refused)} valid link(s) refused with 429")
    wrong = [s for s in samples if s.status != 200 or s.mismatch]
    result.check(
        not wrong,
        f"{len(wrong)} valid link(s) not served whole: "
        + "; ".join(_describe(s) for s in wrong[:3]),
    )
    hits = [s for s in samples if s.x_cache == "HIT"]
    result.check(not hits, f"{len(hits)} 'uncached' link(s) came from the cache: not a lookup")
    return samples


def behind_proxy(stack: Stack, timing: Timing = Timing()) -> Result:
    """nginx in front: forged headers never open ``/metrics``; a flood of unknown
    hashes from the gateway's address is one client's, limited; then that address's
    valid, uncached links are served (200, never 429)."""
    result = Result("behind_proxy", "behind a proxy: forged headers, unknown hashes, links")
    corpus = seed(stack, hot=0, cold=timing.valid_links, big=0, seed=18)
    with _behind_nginx(stack, timing) as proxied:
        url = proxied.nginx.url
        result.notes.append(
            f"nginx {url} -> service :{proxied.service.port}; the gateway sends from "
            f"{proxied.gateway}"
        )
        gateway_transport = httpx.HTTPTransport(local_address=proxied.gateway)
        with (
            httpx.Client(base_url=url, transport=gateway_transport, timeout=300) as gateway,
            httpx.Client(base_url=url, timeout=30) as local,  # from this machine, via nginx
        ):
            _metrics_forged(result, [gateway, local], "forged")
            # The 403s are the headers' doing: a direct loopback peer, no proxy, gets 200.
            with httpx.Client(base_url=proxied.service.url, timeout=30) as direct:
                control, _ = _get(direct, "metrics", "/metrics", "forged")
            result.samples.append(control)
            result.check(control.status == 200, f"/metrics from loopback: {control.status}")

            started = time.monotonic()
            with injected(stack, FLOOD, result):
                flood = asyncio.run(_flood(url, proxied.gateway, timing.unknown_hashes, OUTAGE))
            result.samples += flood
            _check_flood(result, flood, time.monotonic() - started)

            limited = _make_limited(gateway, result)
            result.check(limited, "the gateway's address could not be made limited")
            valid = _valid_links(gateway, result, corpus.cold)
            _metrics_forged(result, [gateway, local], "after")
        if result.problems:
            result.notes.append("proxied service's log:\n" + proxied.service.log_tail())
            result.notes.append("nginx's log:\n" + proxied.nginx.log_tail())
    slowest = max((s.latency for s in valid), default=0.0)
    result.notes.append(
        f"{len(valid)} valid uncached links from the limited address: "
        f"{sum(s.status == 200 for s in valid)} answered 200, slowest {slowest * 1000:.0f} ms"
    )
    _latency_note(result)
    return result


# --- 8b: a task worker killed mid-batch --------------------------------------------

WORKER_MESSAGES = 30


def task_worker_killed(stack: Stack, timing: Timing = Timing()) -> Result:
    """A task worker SIGKILLed while it sends a batch through a slow Evolution (the
    double): a second worker's recovery takes back what the first held. 0 messages lost,
    0 sent twice (the double counts per number), at most the one in flight ``unknown``."""
    import signal
    import subprocess
    import sys

    from tests.evolution_double import EvolutionDouble

    result = Result("task_worker_killed", "task worker SIGKILLed mid-batch (sends)")
    with EvolutionDouble(api_key="chaos", instance="chaos") as double:
        port = free_port()
        env = {
            **stack.env,
            "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
            "EVOLUTION_API_URL": double.url,
            "EVOLUTION_API_KEY": "chaos",
            "EVOLUTION_INSTANCE": "chaos",
            "EVOLUTION_CONNECT_TIMEOUT": "1",
            "EVOLUTION_READ_TIMEOUT": "3",
            "MESSAGE_LEASE_MARGIN": "0",
            "WORKER_RECOVERY_INTERVAL": "0.5",
            "MESSAGE_SEND_DEADLINE": "120",
        }
        service = ServiceProcess(env, port, os.path.join(stack.tmp, "worker-service.log"))
        log_path = os.path.join(stack.tmp, "worker.log")

        def worker() -> subprocess.Popen[bytes]:
            with open(log_path, "ab") as log:
                return subprocess.Popen(
                    [sys.executable, "manage.py", "run_worker", "--interval", "0.05"],
                    cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                    start_new_session=True,
                )  # fmt: skip

        first = second = None
        try:
            service.start()
            headers = {"Authorization": f"Bearer {stack.api_key}"}
            voice = (ROOT / "tests" / "fixtures" / "voice.ogg").read_bytes()
            with httpx.Client(base_url=service.url, headers=headers, timeout=60) as api:
                ids = []
                for i in range(WORKER_MESSAGES):
                    created = api.post("/api/attachments/", files={"file": (f"{i}.ogg", voice)})
                    sent = api.post(
                        "/api/messages/",
                        json={"number": f"55119999{i:05d}", "attachment_id": created.json()["id"]},
                    )
                    result.check(sent.status_code == 202, f"send not accepted: {sent.text}")
                    ids.append(sent.json()["id"])
                double.delay_next(0.3, times=WORKER_MESSAGES * 2)
                first = worker()
                deadline = time.monotonic() + 120
                while double.requests_received < WORKER_MESSAGES // 3:
                    if time.monotonic() > deadline:
                        break
                    time.sleep(0.02)
                time.sleep(0.15)  # into the next send's slow answer
                os.killpg(first.pid, signal.SIGKILL)
                first.wait(timeout=30)
                killed_at = double.requests_received
                second = worker()
                started = time.monotonic()
                statuses: Counter[str] = Counter()
                while time.monotonic() - started < 120:
                    statuses = Counter(api.get(f"/api/messages/{i}").json()["status"] for i in ids)
                    if not statuses["queued"] and not statuses["sending"]:
                        break
                    time.sleep(0.5)
                recovered_in = time.monotonic() - started
        finally:
            for process in (first, second):
                if process is not None and process.poll() is None:
                    os.killpg(process.pid, signal.SIGTERM)
                    process.wait(timeout=30)
            service.stop()
        per_number = Counter(call["json"]["number"] for call in double.sent)
    doubled = sum(1 for n in per_number.values() if n > 1)
    lost = statuses["queued"] + statuses["sending"] + statuses["failed"]
    result.check(lost == 0, f"messages not sent and not unknown: {dict(statuses)}")
    result.check(doubled == 0, f"{doubled} number(s) got the message twice")
    result.check(statuses["unknown"] <= 1, f"{statuses['unknown']} unknown (at most 1)")
    result.check(
        statuses["sent"] == len(per_number) - statuses["unknown"]
        or statuses["sent"] == len(per_number),
        f"sent rows {statuses['sent']} vs numbers the double got {len(per_number)}",
    )
    result.notes.append(
        f"{WORKER_MESSAGES} messages; killed after {killed_at} requests; the second worker "
        f"finished in {recovered_in:.1f} s: {dict(statuses)}; 0 lost, {doubled} sent twice"
    )
    return result


# --- 8: the soak ---------------------------------------------------------------------

SOAK_ROTATION = ("redis_killed", "s3_down", "postgres_down", "redis_slow")


def _cached_by_then(result: Result) -> MayFail:
    """In the soak a Redis restart empties the cache, so "hot" is not "cached": an
    object counts as cached once it was served as a HIT since the last restart.
    During an S3 or PostgreSQL outage only objects not cached by then may get a 503."""
    wiped = [w.end for w in result.windows if w.fault is FAULTS["redis_killed"]]
    hits: dict[str, list[float]] = {}
    for sample in result.samples:
        if sample.x_cache == "HIT":
            hits.setdefault(sample.media_hash, []).append(sample.at + sample.latency)

    def may_fail(sample: Sample, fault: Fault) -> bool:
        if not fault.may_fail:
            return False  # a Redis fault: nothing may fail
        if sample.kind in fault.may_fail:
            return True
        since = max((t for t in wiped if t < sample.at), default=float("-inf"))
        return not any(since < t < sample.at for t in hits.get(sample.media_hash, ()))

    return may_fail


def soak(stack: Stack, timing: Timing) -> Result:
    """Mixed uploads, hits and misses for ``timing.soak`` seconds, with a short fault
    from the rotation in each period: zero 5xx outside those faults, RSS flat."""
    seconds = timing.soak
    period = max(20.0, seconds / 8)
    starts = [t + period / 2 for t in range(0, int(seconds - period / 2), int(period))]
    result = Result("soak", f"soak {seconds:.0f} s: mixed load, {len(starts)} short faults")
    corpus = seed(stack, hot=timing.hot, cold=timing.cold, big=timing.big, seed=17)
    load = _load(
        stack, corpus, timing, SOAK_MIX, 17, rate=timing.soak_rate,
        duration=seconds + 60, max_requests=int(timing.soak_rate * (seconds + 60)),
    )  # fmt: skip
    load.phase = "steady"
    with RssSampler(stack.service) as rss, load.running():  # type: ignore[arg-type]
        began = time.monotonic()
        for index, start in enumerate(starts):
            time.sleep(max(0.0, began + start - time.monotonic()))
            key = SOAK_ROTATION[index % len(SOAK_ROTATION)]
            with injected(stack, FAULTS[key], result, load, phase=key, after="steady"):
                time.sleep(timing.soak_fault)
        time.sleep(max(0.0, began + seconds - time.monotonic()))
    result.samples = load.samples
    check_samples(result, _cached_by_then(result))
    result.rss_growth = rss.growth(skip_fraction=0.2)
    result.check(
        result.rss_growth is None or result.rss_growth < SOAK_RSS_GROWTH,
        f"server RSS grew {(result.rss_growth or 0) / 1e6:.0f} MB after the warm-up "
        f"(bound {SOAK_RSS_GROWTH / 1e6:.0f} MB): a leak?",
    )
    if rss.samples and result.rss_growth is not None:
        first, last = rss.samples[0][1], rss.samples[-1][1]
        peak = max(r for _, r in rss.samples)
        result.notes.append(
            f"RSS {first / 1e6:.0f} MB at start, {last / 1e6:.0f} MB at end, peak "
            f"{peak / 1e6:.0f} MB; growth after the first 20%: {result.rss_growth / 1e6:+.1f} MB"
        )
    steady = summarize([s for s in result.samples if result.fault_of(s) is None])
    result.notes.append(
        f"outside the faults: {steady.requests} requests, p50 {steady.p50 * 1000:.1f} ms, "
        f"p99 {steady.p99 * 1000:.1f} ms, max {steady.max_latency * 1000:.1f} ms"
    )
    _latency_note(result)
    return result


SCENARIOS: dict[str, Callable[[Stack, Timing], Result]] = {
    "redis_killed": redis_killed,
    "redis_slow": redis_slow,
    "s3_down": s3_down,
    "postgres_down": postgres_down,
    "crash": crash_between_store_and_db,
    "concurrent_uploads": concurrent_uploads,
    "behind_proxy": behind_proxy,
    "task_worker_killed": task_worker_killed,
    "soak": soak,
}


# --- The table -----------------------------------------------------------------------


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def table(results: list[Result]) -> str:
    """One line per scenario: what was broken, what the load saw, whether it passed."""
    header = (
        "fault injected", "requests", "failures by status", "bytes mismatched",
        "GET max (fault)", "GET p50 / p99 (fault)", "RSS growth", "result",
    )  # fmt: skip
    rows = [header]
    for r in results:
        total, during = r.total(), r.during()
        failures = ", ".join(f"{k} ({v})" for k, v in total.failures().items()) or "none"
        rss = "n/a" if r.rss_growth is None else f"{r.rss_growth / 1e6:+.1f} MB"
        rows.append(
            (
                r.fault,
                str(total.requests),
                failures,
                str(total.mismatched),
                _ms(during.max_latency) if during.requests else "-",
                f"{_ms(during.p50)} / {_ms(during.p99)}" if during.requests else "-",
                rss,
                "ok" if r.ok else f"FAIL ({len(r.problems)})",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [" | ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)
