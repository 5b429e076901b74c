"""The conversion pool (mediacache.media.pool): long-lived workers, killed one at a time.

Real worker processes (``encoders --serve``) and real files. A decoder that hangs is a
named pipe nobody writes to: opening it blocks inside FFmpeg, as a hostile stream can.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from mediacache.media import pool
from tests.media_gen import audio


@pytest.fixture
def conversions():
    made: list[pool.ConversionPool] = []

    def make(size: int = 1, max_memory: int = 2**30, nice: int = 0) -> pool.ConversionPool:
        made.append(pool.ConversionPool(pool.PoolConfig(size, nice, max_memory)))
        return made[-1]

    yield make
    for each in made:
        each.close()


@pytest.fixture
def wav(tmp_path: Path) -> Path:
    path = tmp_path / "a.wav"
    path.write_bytes(audio("wav", 0.5))
    return path


@pytest.fixture
def hanging(tmp_path: Path) -> Path:
    """An input whose open never returns: a FIFO without a writer."""
    path = tmp_path / "hangs.ogg"
    os.mkfifo(path)
    return path


def exited(pid: int) -> bool:
    """Every thread of ``pid`` is gone (a killed process shows Z before its threads end,
    and only then can its parent reap it)."""
    try:
        return len(os.listdir(f"/proc/{pid}/task")) <= 1 and (
            Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
        )
    except (FileNotFoundError, ProcessLookupError):
        return True


def voice(source: Path, out: Path) -> list[str]:
    return ["voice", str(source), str(out), "48000", "24000"]


def wait_until(condition, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_one_worker_serves_many_jobs(conversions, wav, tmp_path):
    converter = conversions()
    pids = set()
    for i in range(3):
        answer = converter.run(voice(wav, tmp_path / f"{i}.ogg"), 30)
        assert answer["ok"], answer
        assert (tmp_path / f"{i}.ogg").stat().st_size > 0
        pids.update(converter.idle_pids())
    assert converter.started == 1
    assert len(pids) == 1


def test_prewarmed_workers_start_in_the_background_and_take_the_first_jobs(
    conversions, wav, tmp_path
):
    converter = conversions(size=2)
    assert converter.prewarm(5) == 2  # never past the pool's size
    assert converter.prewarm(1) == 0  # their places are taken while they start
    wait_until(lambda: len(converter.idle_pids()) == 2)
    assert converter.run(voice(wav, tmp_path / "first.ogg"), 30)["ok"]
    assert converter.started == 2  # the first job started no worker of its own


def test_prewarm_follows_the_settings(monkeypatch):
    from mediacache.core.settings import MediaSettings
    from mediacache.media import transcode

    made: list[pool.ConversionPool] = []
    monkeypatch.setattr(pool, "get_pool", lambda config: made.append(FakePool(config)) or made[-1])
    assert transcode.prewarm(MediaSettings(TRANSCODE_PREWARM=0)) == 0
    assert made == []  # no pool made for nothing
    assert transcode.prewarm(MediaSettings(TRANSCODE_PREWARM=3, TRANSCODE_WORKERS=2)) == 2
    assert made[0].config == pool.PoolConfig(size=2, nice=10, max_memory=2**30)


class FakePool:
    """Pure logic: what ``transcode.prewarm`` asks of the pool (the pool itself is real
    in the test above)."""

    def __init__(self, config: pool.PoolConfig) -> None:
        self.config = config

    def prewarm(self, count: int) -> int:
        return min(count, self.config.size)


def test_a_hung_job_is_killed_alone_and_its_worker_replaced(conversions, wav, hanging, tmp_path):
    converter = conversions(size=2)
    results: dict[str, object] = {}

    def hang() -> None:
        try:
            converter.run(["probe", str(hanging)], 1.0)
        except pool.WorkerLost as exc:
            results["hang"] = exc.reason

    thread = threading.Thread(target=hang)
    thread.start()
    # Meanwhile the other worker converts as usual.
    answer = converter.run(voice(wav, tmp_path / "ok.ogg"), 30)
    assert answer["ok"], answer
    thread.join(30)
    assert results["hang"] == "conversion took longer than 1 s and was stopped"
    wait_until(lambda: len(converter.idle_pids()) == 2)  # the replacement is up
    assert converter.run(voice(wav, tmp_path / "again.ogg"), 30)["ok"]


def test_a_worker_killed_mid_job_fails_that_job_only(conversions, wav, hanging, tmp_path):
    converter = conversions()
    converter.run(voice(wav, tmp_path / "warm.ogg"), 30)
    (victim,) = converter.idle_pids()
    threading.Timer(0.5, os.kill, (victim, signal.SIGKILL)).start()
    with pytest.raises(pool.WorkerLost) as lost:
        converter.run(["probe", str(hanging)], 30)
    assert lost.value.reason.startswith("converter crashed (exit -9)"), lost.value.reason
    answer = converter.run(voice(wav, tmp_path / "after.ogg"), 30)
    assert answer["ok"]
    assert converter.idle_pids() != [victim]


def test_a_worker_that_died_while_idle_gets_no_job(conversions, wav, tmp_path):
    converter = conversions()
    converter.run(voice(wav, tmp_path / "warm.ogg"), 30)
    (idle,) = converter.idle_pids()
    os.kill(idle, signal.SIGKILL)
    wait_until(lambda: exited(idle))
    assert converter.run(voice(wav, tmp_path / "after.ogg"), 30)["ok"]
    assert converter.started == 2


def test_a_worker_over_the_memory_limit_is_killed(conversions, hanging):
    converter = conversions(max_memory=8 * 2**20)  # less than Python and PyAV take
    with pytest.raises(pool.WorkerLost) as lost:
        converter.run(["probe", str(hanging)], 30)
    assert lost.value.reason == "conversion used more than 8 MB of memory and was stopped"


def test_an_exception_in_a_job_ends_its_worker(conversions, tmp_path):
    """State unknown after an unhandled error: the worker answers, exits, and is replaced."""
    from PIL import Image

    converter = conversions()
    picture = tmp_path / "in.png"
    Image.new("RGB", (4, 4)).save(picture)
    missing = tmp_path / "gone" / "out.jpg"
    with pytest.raises(pool.WorkerLost) as lost:
        converter.run(["image", str(picture), str(missing), "100000", "64"], 30)
    assert lost.value.reason.startswith("converter crashed (exit 1): FileNotFoundError")
    wait_until(lambda: len(converter.idle_pids()) == 1)


def test_workers_run_at_a_lower_priority(conversions, wav, tmp_path):
    converter = conversions(nice=5)
    answer = converter.run(voice(wav, tmp_path / "n.ogg"), 30)
    assert answer["nice"] == min(19, os.nice(0) + 5)


def test_workers_end_with_the_process_that_started_them(wav, tmp_path):
    """A web process killed with SIGKILL leaves no conversion worker behind."""
    code = (
        "import sys\n"
        "from mediacache.media import pool\n"
        "p = pool.ConversionPool(pool.PoolConfig(1, 0, 2**30))\n"
        f"p.run(['voice', {str(wav)!r}, {str(tmp_path / 'x.ogg')!r}, '48000', '24000'], 30)\n"
        "print(p.idle_pids()[0], flush=True)\n"
        "sys.stdin.read()\n"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert parent.stdout is not None
    worker = int(parent.stdout.readline())
    parent.kill()
    parent.wait()

    def gone() -> bool:
        try:
            os.kill(worker, 0)
        except ProcessLookupError:
            return True
        return Path(f"/proc/{worker}/stat").read_text().split()[2] == "Z"

    wait_until(gone)
