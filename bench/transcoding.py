"""The voice-note part of ``make bench``: what a conversion costs, and what it costs the hits.

1. **Time per second of audio.** A 30 s recording in each format a client sends
   (Chrome's WebM/Opus, Safari's MP4/AAC, MP3, WAV) goes through
   ``mediacache.media.transcode.voice_variant`` -- the production call: a child process
   at the configured niceness -- three times; the median wall time and the child's
   CPU time (``RUSAGE_CHILDREN``) are divided by the audio's length.
2. **Hits while converting.** ``wrk`` against the L1-hit link of a one-worker
   service, alternating three conditions: quiet; while a client uploads that WebM
   recording to the *same* service at a steady rate, stored as is; and at the
   same rate flagged ``voice_note``, so each upload is converted before its 201.
   The last two apart are what the conversions themselves cost the hit path; the
   first two apart, what taking uploads costs it.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

# The test suite's generators: real files made with PyAV, as the clients make them.
from tests.media_gen import AUDIO_FORMATS, audio

from bench.infra import ForeignLoad, Proc, Processes, run_wrk, say, wait_for_quiet

SECONDS = 30.0
FORMATS = ("webm_opus", "mp4_aac", "mp3", "wav")
REPEATS = 3
OPUS = "audio/ogg; codecs=opus"


def transcode_run(
    args: argparse.Namespace,
    procs: Processes,
    service: Proc,
    hit_url: str,
    api_key: str,
    report: Any,
) -> None:
    inputs = {kind: audio(kind, SECONDS) for kind in FORMATS}
    per_format = _encoder_costs(inputs)
    report.add("")
    report.add(
        f"VOICE NOTES  {SECONDS:.0f} s recordings -> Ogg Opus mono 48 kHz, "
        f"mediacache.media.transcode child (nice {_nice()}), median of {REPEATS}"
    )
    header = (
        f"{'input':<28} {'wall ms':>8} {'CPU ms':>7} {'wall ms / s audio':>18} "
        f"{'CPU ms / s audio':>17} {'x real time':>12}"
    )
    report.add(header)
    report.add("-" * len(header))
    for kind, (wall, cpu) in per_format.items():
        label = f"{kind} ({len(inputs[kind]) // 1024} KB)"
        report.add(
            f"{label:<28} {wall * 1000:>8.0f} {cpu * 1000:>7.0f} "
            f"{wall * 1000 / SECONDS:>18.1f} {cpu * 1000 / SECONDS:>17.1f} "
            f"{SECONDS / wall:>11.0f}x"
        )
    worst = max(wall for wall, _cpu in per_format.values())
    report.check(
        "voice note transcode, wall per second of audio",
        f"{worst * 1000 / SECONDS:.1f} ms at worst ({SECONDS / worst:.0f}x real time)",
        None,
    )
    _hits_while_converting(args, procs, service, hit_url, api_key, inputs["webm_opus"], report)


def _nice() -> int:
    from mediacache.core.settings import media_settings

    return media_settings().TRANSCODE_NICE


def _encoder_costs(inputs: dict[str, bytes]) -> dict[str, tuple[float, float]]:
    """Median (wall s, child CPU s) of ``voice_variant`` per input format."""
    from django.conf import settings

    if not settings.configured:
        settings.configure()  # WhatsApp's defaults (mediacache.core.settings.MediaSettings)
    from mediacache.media.transcode import voice_variant

    costs: dict[str, tuple[float, float]] = {}
    with tempfile.TemporaryDirectory(prefix="mediacache-bench-voice-") as work:
        for kind, body in inputs.items():
            source = Path(work) / AUDIO_FORMATS[kind][4]
            source.write_bytes(body)
            walls, cpus = [], []
            for i in range(REPEATS):
                before = resource.getrusage(resource.RUSAGE_CHILDREN)
                started = time.perf_counter()
                outcome = voice_variant(str(source), f"{work}/{kind}-{i}.ogg", timeout=120)
                walls.append(time.perf_counter() - started)
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                cpus.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
                if abs((outcome.duration or 0) - SECONDS) > 0.1:
                    raise RuntimeError(f"{kind}: variant lasts {outcome.duration} s")
            costs[kind] = (statistics.median(walls), statistics.median(cpus))
            say(f"transcode {kind}: {costs[kind][0] * 1000:.0f} ms wall")
    return costs


UPLOADS_PER_SECOND = 1.0  # 30 s of audio per second: ~86,000 voice notes a day


class Uploader(threading.Thread):
    """Uploads one recording at a steady rate until stopped.

    ``convert``: flagged ``voice_note`` as a chat client's record button does (the
    bench's services run with MEDIA_VOICE_VARIANTS=0, their hit bodies not being
    real audio), so each upload is converted before its 201; otherwise stored as is.
    """

    def __init__(self, base_url: str, api_key: str, body: bytes, *, convert: bool) -> None:
        super().__init__(daemon=True)
        self.base_url, self.api_key, self.body, self.convert = base_url, api_key, body, convert
        self.done = 0
        self.failures: list[str] = []
        self._halt = threading.Event()

    def run(self) -> None:
        headers = {"Authorization": f"Bearer {self.api_key}"}
        data = {"voice_note": "true"} if self.convert else {}
        next_at = time.monotonic()
        with httpx.Client(base_url=self.base_url, headers=headers, timeout=120) as client:
            while not self._halt.wait(max(0.0, next_at - time.monotonic())):
                next_at += 1 / UPLOADS_PER_SECOND
                files = {"file": ("recording.webm", self.body, "audio/webm")}
                response = client.post("/api/attachments/", files=files, data=data)
                answer = response.json() if response.status_code == 201 else {}
                converted = answer.get("variant_mime_type") == OPUS
                if response.status_code != 201 or converted != self.convert:
                    self.failures.append(f"{response.status_code} {response.text[:300]}")
                else:
                    self.done += 1

    def stop(self) -> int:
        self._halt.set()
        self.join(timeout=180)
        if self.failures:
            raise RuntimeError(f"uploads while benchmarking failed: {self.failures[:3]}")
        return self.done


CONDITIONS = ("quiet", "uploads stored as is", "uploads converted")
CPU_PARTS = ("worker", "conversions", "S3 (moto)", "wrk")


class CpuMeter:
    """Cores used, over one run, by the worker, its reaped conversion children, moto, wrk.

    Conversions are children the worker waits for, so ``children_*`` of its CPU
    times; wrk is this process's child (``RUSAGE_CHILDREN``): where the two cores go.
    """

    def __init__(self, worker_pid: int, s3_pid: int | None) -> None:
        import psutil

        self.worker = psutil.Process(worker_pid)
        self.s3 = psutil.Process(s3_pid) if s3_pid else None

    def _sample(self) -> tuple[float, ...]:
        w = self.worker.cpu_times()
        s3 = self.s3.cpu_times() if self.s3 is not None else None
        mine = resource.getrusage(resource.RUSAGE_CHILDREN)
        return (
            w.user + w.system,
            w.children_user + w.children_system,
            s3.user + s3.system + s3.children_user + s3.children_system if s3 else 0.0,
            mine.ru_utime + mine.ru_stime,
            time.monotonic(),
        )

    def start(self) -> None:
        self._before = self._sample()

    def stop(self) -> dict[str, float]:
        after = self._sample()
        wall = after[-1] - self._before[-1]
        return {part: (after[i] - self._before[i]) / wall for i, part in enumerate(CPU_PARTS)}


def _hits_while_converting(
    args: argparse.Namespace,
    procs: Processes,
    service: Proc,
    hit_url: str,
    api_key: str,
    recording: bytes,
    report: Any,
) -> None:
    """wrk on the hit link: quiet, with uploads stored as is, with uploads converted
    (same rate, same file), alternating; the last two apart show the conversions' share."""
    wrk = {"threads": args.threads, "connections": args.connections, "seconds": args.duration}
    load = ForeignLoad(procs)
    s3 = next((p for p in procs.procs if p.name == "moto-s3"), None)
    meter = CpuMeter(service.worker_pids()[0], s3.tree_pids()[-1] if s3 else None)
    cores: dict[str, list[dict[str, float]]] = {c: [] for c in CONDITIONS}
    runs: dict[str, list] = {c: [] for c in CONDITIONS}
    uploads: dict[str, int] = dict.fromkeys(CONDITIONS, 0)
    base_url = f"http://127.0.0.1:{service.port}"
    for round_no in range(max(args.rounds, 2)):
        order = CONDITIONS if round_no % 2 == 0 else tuple(reversed(CONDITIONS))
        for condition in order:
            if args.quiet_wait > 0:
                wait_for_quiet(load, max_wait=args.quiet_wait)
            uploader = None
            if condition != "quiet":
                uploader = Uploader(
                    base_url, api_key, recording, convert=condition == "uploads converted"
                )
                uploader.start()
                time.sleep(0.5)  # the first upload is under way
            meter.start()
            result = run_wrk(hit_url, **wrk)
            cores[condition].append(meter.stop())
            if uploader is not None:
                uploads[condition] += uploader.stop()
            runs[condition].append(result)
            say(f"hits, {condition}: {result.rps:,.0f} req/s, p99 {result.p99_ms:.2f} ms")
    median = {c: statistics.median(r.rps for r in runs[c]) for c in CONDITIONS}
    seconds = args.duration * len(runs["quiet"])
    report.add("")
    report.add(
        f"HITS WHILE CONVERTING  L1 hit, 1 worker, wrk -t{args.threads} -c{args.connections} "
        f"-d{args.duration}s; the same service takes {UPLOADS_PER_SECOND:g} upload/s of the "
        f"{SECONDS:.0f} s WebM recording ({len(recording) // 1024} KB)"
    )
    header = f"{'':<24} {'req/s':>9} {'p50 ms':>7} {'p99 ms':>7} {'x quiet':>8} {'uploads':>8}"
    report.add(header + "  runs (req/s)")
    for condition in CONDITIONS:
        mid = sorted(runs[condition], key=lambda r: r.rps)[len(runs[condition]) // 2]
        each = " / ".join(f"{r.rps:,.0f}" for r in runs[condition])
        report.add(
            f"{condition:<24} {median[condition]:>9,.0f} {mid.p50_ms:>7.2f} {mid.p99_ms:>7.2f} "
            f"{median[condition] / median['quiet']:>8.1%} {uploads[condition]:>8}  {each}"
        )
    report.add(f"({seconds} s per condition; req/s are medians of the runs)")
    report.add("cores used during the runs (mean):")
    report.add(f"{'':<24} " + " ".join(f"{part:>11}" for part in CPU_PARTS))
    for condition in CONDITIONS:
        mean = {p: statistics.mean(c[p] for c in cores[condition]) for p in CPU_PARTS}
        report.add(f"{condition:<24} " + " ".join(f"{mean[p]:>11.2f}" for p in CPU_PARTS))
    converted, stored = median["uploads converted"], median["uploads stored as is"]
    report.check(
        "hit req/s, uploads converted vs stored as is",
        f"{converted / stored:.1%} ({converted:,.0f} vs {stored:,.0f}; "
        f"quiet {median['quiet']:,.0f})",
        None,
    )
