"""Conversion faults: a worker killed mid-job, a decoder that hangs.

The service's conversion workers (:mod:`mediacache.media.pool`) are children of its
web process running ``mediacache.media.encoders --serve``. While the load keeps
fetching cached objects, a recording that takes a worker a while is uploaded, and
the worker busy with it is either SIGKILLed (a decoder crash, an OOM kill) or
SIGSTOPped (a decoder that never returns: only the pool's ``MEDIA_TRANSCODE_TIMEOUT``
can end it). Checked: that upload gets a JSON error (400, the reason) or succeeds;
every GET in the meantime is served with the right bytes; a refused upload leaves no
object and no row; the stopped worker is gone afterwards; and the next recording is
converted as usual.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable

import httpx
import psutil

from chaos.scenarios import (
    OUTAGE,
    WARM_MIX,
    Fault,
    Result,
    Timing,
    _latency_note,
    _load,
    check_samples,
    injected,
)
from tests.faults import API, RssSampler, Sample, Stack, answered, failed, seed

OPUS = "audio/ogg; codecs=opus"
RECORDING_SECONDS = 60.0  # a WAV a worker needs a good fraction of a second for
UPLOADS = 3  # recordings hit by the fault, one after the other


def _recording(seconds: float) -> bytes:
    from tests.media_gen import audio

    return audio("wav", seconds)


def conversion_workers(stack: Stack) -> list[psutil.Process]:
    """The service's conversion workers (children of its one web process)."""
    process = stack.service.process if stack.service else None
    if process is None:
        return []
    workers = []
    for child in psutil.Process(process.pid).children(recursive=True):
        try:
            if "mediacache.media.encoders" in " ".join(child.cmdline()):
                workers.append(child)
        except psutil.Error:
            continue
    return workers


def busy_worker(stack: Stack, within: float) -> psutil.Process | None:
    """The worker whose CPU time grows now: the one converting."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        before = {}
        for worker in conversion_workers(stack):
            try:
                times = worker.cpu_times()
                before[worker] = times.user + times.system
            except psutil.Error:
                continue
        time.sleep(0.05)
        for worker, spent in before.items():
            try:
                times = worker.cpu_times()
                if times.user + times.system - spent > 0.01:
                    return worker
            except psutil.Error:
                continue
    return None


def _upload(stack: Stack, body: bytes, name: str, sample: Sample) -> dict | None:
    headers = {"Authorization": f"Bearer {stack.api_key}"}
    with httpx.Client(base_url=stack.url, headers=headers, timeout=180) as client:
        try:
            response = client.post(API, files={"file": (name, body)})
        except httpx.HTTPError as exc:
            failed(sample, exc)
            return None
    answered(sample, response)
    try:
        data = response.json()
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _upload_into(
    answer: dict[str, dict | None], stack: Stack, body: bytes, name: str, sample: Sample
) -> None:
    answer["data"] = _upload(stack, body, name, sample)


def _conversion_fault(
    stack: Stack,
    timing: Timing,
    *,
    name: str,
    label: str,
    act: Callable[[psutil.Process], None],
    expected: str,
    seed_value: int,
) -> Result:
    result = Result(name, label)
    fault = Fault(label, lambda s: None, lambda s: None)  # acted on inside the window
    body = _recording(RECORDING_SECONDS)
    corpus = seed(stack, hot=timing.hot, cold=0, big=0, seed=seed_value)
    load = _load(stack, corpus, timing, WARM_MIX, seed_value, rate=timing.rate / 2)
    uploads: list[tuple[Sample, dict | None]] = []
    victims: list[psutil.Process] = []
    with RssSampler(stack.service) as rss, load.running():  # type: ignore[arg-type]
        time.sleep(timing.warm)
        with injected(stack, fault, result, load):
            for i in range(UPLOADS):
                keys, rows = stack.object_keys(), stack.attachment_keys()
                sample = Sample(time.monotonic(), OUTAGE, "upload", 0, 0.0)
                answer: dict[str, dict | None] = {}
                thread = threading.Thread(
                    target=_upload_into, args=(answer, stack, body, f"r{i}.wav", sample)
                )
                thread.start()
                victim = busy_worker(stack, within=30)
                if victim is not None:
                    act(victim)
                    victims.append(victim)
                thread.join(timeout=180)
                uploads.append((sample, answer.get("data")))
                if sample.status != 201:
                    result.check(
                        stack.object_keys() == keys, f"upload {i}: a refused upload left objects"
                    )
                    result.check(stack.attachment_keys() == rows, f"upload {i}: left a row")
        time.sleep(timing.recover)
    result.rss_growth = rss.growth()
    result.samples = load.samples
    check_samples(result)  # the GETs: served throughout, the right bytes
    refused = 0
    for i, (sample, data) in enumerate(uploads):
        error = str((data or {}).get("error", ""))
        if sample.status == 201:
            result.notes.append(f"upload {i}: converted before the fault reached it (201)")
        elif sample.status == 400 and expected in error:
            refused += 1
        else:
            result.problems.append(
                f"upload {i}: {sample.status} {sample.error or error!r}, expected 400 with "
                f"{expected!r} or 201"
            )
    result.check(refused > 0, "no upload was hit by the fault (no busy worker seen)")
    result.notes.append(f"{refused} of {len(uploads)} upload(s) refused: {expected!r}")
    for victim in victims:
        result.check(not _running(victim), f"worker {victim.pid} is still there")
    after = Sample(time.monotonic(), "after", "upload", 0, 0.0)
    data = _upload(stack, _recording(5.0), "after.wav", after)
    result.check(
        after.status == 201 and (data or {}).get("variant_mime_type") == OPUS,
        f"the next recording was not converted: {after.status} {after.error}",
    )
    result.samples += [s for s, _ in uploads] + [after]
    _latency_note(result)
    return result


def _running(process: psutil.Process) -> bool:
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def worker_killed(stack: Stack, timing: Timing) -> Result:
    """A conversion worker SIGKILLed mid-job: that upload 400s, nothing else notices."""
    return _conversion_fault(
        stack,
        timing,
        name="worker_killed",
        label="a conversion worker killed mid-job",
        act=lambda worker: worker.send_signal(signal.SIGKILL),
        expected="converter crashed (exit -9)",
        seed_value=17,
    )


def decoder_hangs(stack: Stack, timing: Timing) -> Result:
    """A decoder that never returns (its worker SIGSTOPped): the time limit ends it."""
    limit = float(stack.env.get("MEDIA_TRANSCODE_TIMEOUT") or 60)
    return _conversion_fault(
        stack,
        timing,
        name="decoder_hangs",
        label=f"a decoder that hangs (worker stopped; limit {limit:g} s)",
        act=lambda worker: worker.send_signal(signal.SIGSTOP),
        expected=f"conversion took longer than {limit:g} s and was stopped",
        seed_value=18,
    )


SCENARIOS = {"worker_killed": worker_killed, "decoder_hangs": decoder_hangs}
