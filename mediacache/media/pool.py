"""Long-lived conversion processes: no process start per upload, the same isolation.

Starting ``python -m mediacache.media.encoders`` for every upload cost 125-200 ms of
Python and PyAV start-up, more than the conversion of a voice note itself. So each web
process keeps up to ``TRANSCODE_WORKERS`` worker processes (``encoders --serve``),
started at the first conversion (or ``TRANSCODE_PREWARM`` of them in the background when
the process starts serving), and hands each job to an idle one over its pipes:
one JSON line of arguments in, one JSON line of result out.

The isolation of a child per job stays: a worker is a separate process at a lower CPU
priority (``TRANSCODE_NICE``); the calling thread owns the worker for the job and waits
with its own deadline. A job that passes ``TRANSCODE_TIMEOUT``, a worker that dies
(a decoder's segfault) or whose resident memory passes ``TRANSCODE_MAX_MEMORY`` is
killed -- that one process, never the web process and never another job -- the caller
gets :class:`WorkerLost` with the reason, and a replacement starts in the background.
A worker that kept more than a quarter of the memory limit after a job is retired the
same way, quietly, so memory freed by one large file is returned.

Why hand-written: ``concurrent.futures.ProcessPoolExecutor`` cannot stop one job --
a hung decode ends only by killing its process, and a killed worker breaks the whole
executor (``BrokenProcessPool`` for every job in flight and every later submit);
``multiprocessing.Pool`` has no per-job time limit either, and both fork the (threaded)
web process or pickle callables. A worker here is a plain ``subprocess`` child with
pipes, so killing it is ``SIGKILL`` to one pid.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import json
import os
import select
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

from mediacache.media.encoders import NICE_ENV

__all__ = ["ConversionPool", "PoolConfig", "WorkerLost", "current", "get_pool", "shutdown"]

# How long a new worker may take to import PyAV and Pillow and say it is ready.
START_TIMEOUT = 30.0
# How often a busy worker's memory is looked at while its job runs.
MEMORY_POLL = 0.05


class WorkerLost(Exception):
    """The job's worker was killed or died: ``reason`` says why (may name server paths)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class PoolConfig:
    size: int
    nice: int
    max_memory: int  # bytes of resident memory per worker; 0: no limit


class Worker:
    """One ``encoders --serve`` process and its pipes."""

    def __init__(self, nice: int) -> None:
        self.process = subprocess.Popen(  # our own module, no shell
            [sys.executable, "-m", "mediacache.media.encoders", "--serve"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1", NICE_ENV: str(nice)},
            close_fds=True,
        )
        self.jobs = 0
        self._pending = b""
        self._stderr: collections.deque[str] = collections.deque(maxlen=20)
        threading.Thread(target=self._drain_stderr, daemon=True, name="converter-stderr").start()

    @property
    def pid(self) -> int:
        return self.process.pid

    def _drain_stderr(self) -> None:
        """Keep the last lines of the worker's stderr (a crash's traceback) without ever
        letting the pipe fill up and block the worker."""
        stream = self.process.stderr
        assert stream is not None
        with contextlib.suppress(ValueError, OSError):
            for raw in stream:
                line = raw.decode("utf-8", "replace").strip()
                if line:
                    self._stderr.append(line)
            stream.close()  # the worker is gone: its pipe's descriptor goes too

    def wait_ready(self) -> None:
        self._read_line(time.monotonic() + START_TIMEOUT, 0, "start")

    def call(self, args: list[str], timeout: float, max_memory: int) -> dict[str, Any]:
        """Run one job; :class:`WorkerLost` (the worker is then dead) if it cannot."""
        stdin = self.process.stdin
        assert stdin is not None
        try:
            stdin.write(json.dumps(args).encode() + b"\n")
            stdin.flush()
        except OSError as exc:
            raise self._lost(f"could not reach the converter: {exc}") from exc
        self.jobs += 1
        answer = self._read_line(time.monotonic() + timeout, max_memory, "job", timeout)
        if "crash" in answer:
            raise self._lost(str(answer["crash"]))
        return answer

    def _read_line(
        self, deadline: float, max_memory: int, what: str, timeout: float = START_TIMEOUT
    ) -> dict[str, Any]:
        stdout = self.process.stdout
        assert stdout is not None
        fd = stdout.fileno()
        while b"\n" not in self._pending:
            left = deadline - time.monotonic()
            if left <= 0:
                self.kill()
                if what == "start":
                    raise WorkerLost(f"the converter did not start within {timeout:g} s")
                raise WorkerLost(f"conversion took longer than {timeout:g} s and was stopped")
            ready, _, _ = select.select([fd], [], [], min(left, MEMORY_POLL))
            if not ready:
                if max_memory and _rss_bytes(self.pid) > max_memory:
                    self.kill()
                    raise WorkerLost(
                        f"conversion used more than {max_memory // 2**20} MB of memory "
                        "and was stopped"
                    )
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                raise self._lost("")
            self._pending += chunk
        line, _, self._pending = self._pending.partition(b"\n")
        try:
            answer = json.loads(line)
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            self.kill()  # it no longer speaks the protocol: its state is unknown
            raise self._lost(f"unexpected answer {line[:100]!r}")
        return answer

    def _lost(self, said: str) -> WorkerLost:
        """The worker died (or is made to): its exit status and last words."""
        try:
            code = self.process.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self.kill()
            code = self.process.returncode
        time.sleep(0.01)  # let the stderr reader take the last lines
        last = said or (self._stderr[-1] if self._stderr else "no output")
        return WorkerLost(f"converter crashed (exit {code}): {last}")

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        with contextlib.suppress(OSError):
            self.process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=5)
        for stream in (self.process.stdin, self.process.stdout):
            with contextlib.suppress(OSError):
                if stream is not None:
                    stream.close()


class ConversionPool:
    """Up to ``config.size`` workers; a job waits for an idle one (each job in front of
    it is bounded by its own time limit)."""

    def __init__(self, config: PoolConfig) -> None:
        self.config = config
        self._ready = threading.Condition()
        self._idle: list[Worker] = []
        self._busy: set[Worker] = set()
        self._count = 0  # workers alive or starting
        self._closed = False
        self.started = 0  # workers started over the pool's life (tests, logs)

    def run(self, args: list[str], timeout: float) -> dict[str, Any]:
        worker = self._checkout()
        with self._ready:
            self._busy.add(worker)
        healthy = False
        try:
            answer = worker.call(args, timeout, self.config.max_memory)
            keep = self.config.max_memory // 4
            healthy = not keep or int(answer.get("rss") or 0) <= keep
            return answer
        finally:
            self._checkin(worker, healthy=healthy and worker.alive())

    def _checkout(self) -> Worker:
        while True:
            with self._ready:
                while not self._idle and self._count >= self.config.size:
                    self._ready.wait()
                if not self._idle:
                    self._count += 1
                    break
                worker = self._idle.pop()  # the most recently used: its caches are warm
                if worker.alive():
                    return worker
                self._count -= 1  # died while idle (killed from outside): not given a job
            worker.kill()
        return self._start()

    def _start(self) -> Worker:
        """A new worker, ready; a worker that cannot start frees its place."""
        worker = None
        try:
            worker = Worker(self.config.nice)
            self.started += 1
            worker.wait_ready()
        except BaseException:
            with self._ready:
                self._count -= 1
                self._ready.notify()
            if worker is not None:
                worker.kill()
            raise
        return worker

    def _checkin(self, worker: Worker, *, healthy: bool) -> None:
        with self._ready:
            self._busy.discard(worker)
        if healthy:
            with self._ready:
                if not self._closed:
                    self._idle.append(worker)
                    self._ready.notify()
                    return
        worker.kill()
        with self._ready:
            self._count -= 1
            replace = not self._closed
            if replace:
                self._count += 1  # the replacement's place, taken before anyone else's
        if replace:
            threading.Thread(target=self._replace, daemon=True, name="converter-start").start()

    def prewarm(self, count: int) -> int:
        """Start up to ``count`` workers in the background (never past the pool's size),
        so the first jobs find one ready; how many were started."""
        with self._ready:
            count = max(0, min(count, self.config.size - self._count))
            self._count += count  # their places, taken now as a replacement's is
        for _ in range(count):
            threading.Thread(target=self._replace, daemon=True, name="converter-start").start()
        return count

    def _replace(self) -> None:
        try:
            worker = self._start()
        except Exception:  # the next job starts one itself and reports why
            return
        self._checkin_new(worker)

    def _checkin_new(self, worker: Worker) -> None:
        with self._ready:
            if not self._closed:
                self._idle.append(worker)
                self._ready.notify()
                return
            self._count -= 1
        worker.kill()

    def idle_pids(self) -> list[int]:
        with self._ready:
            return [worker.pid for worker in self._idle]

    def busy_pids(self) -> list[int]:
        """Workers running a job now (the chaos run kills one of them)."""
        with self._ready:
            return [worker.pid for worker in self._busy]

    def close(self) -> None:
        with self._ready:
            self._closed = True
            idle, self._idle = self._idle, []
            self._count -= len(idle)
            self._ready.notify_all()
        for worker in idle:
            worker.kill()


_lock = threading.Lock()
_pool: ConversionPool | None = None
_owner = 0  # the pid that started _pool: a forked child starts its own


def get_pool(config: PoolConfig) -> ConversionPool:
    """This process's pool, for these settings (changed settings: a fresh pool)."""
    global _pool, _owner
    with _lock:
        if _pool is not None and _owner == os.getpid() and _pool.config == config:
            return _pool
        old, old_owner = _pool, _owner
        _pool, _owner = ConversionPool(config), os.getpid()
        pool = _pool
    if old is not None and old_owner == os.getpid():
        old.close()
    return pool


def current() -> ConversionPool | None:
    """This process's pool, if a conversion started one."""
    with _lock:
        return _pool if _owner == os.getpid() else None


def shutdown() -> None:
    """End every idle worker (busy ones end when their job does or the process exits)."""
    global _pool
    with _lock:
        pool, _pool = _pool, None
    if pool is not None and _owner == os.getpid():
        pool.close()


atexit.register(shutdown)


def _rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0
