"""The moving parts a benchmark needs, each private to the run and cleaned up after it.

A redis-server on a free port, moto's S3 server, nginx with its own prefix, the
service under uvicorn or granian, the naive Django baseline under gunicorn; plus
seeding through the real upload API and a ``wrk`` runner that parses its output.
Every process is started in its own session and ended by its process group id
when the :class:`Processes` registry closes, also on Ctrl-C and errors.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = Path(__file__).resolve().parent
PYTHON = sys.executable
BUCKET = "bench-media"
S3_KEY = "bench"  # moto accepts any credentials

# Variables the service reads: never inherited from the caller's shell.
_SCRUBBED_PREFIXES = ("MEDIA_", "S3_", "TEST_", "GRANIAN_", "UVICORN_", "WEB_CONCURRENCY")
_SCRUBBED = {
    "DATABASE_URL",
    "REDIS_URL",
    "SECRET_KEY",
    "ALLOWED_HOSTS",
    "PUBLIC_BASE_URL",
    "DEBUG",
    "LOG_LEVEL",
    "SECURE_SSL_REDIRECT",
    "METRICS_TOKEN",
    "DJANGO_SETTINGS_MODULE",
    "MEDIACACHE_VAR_DIR",
    "MEDIA_ROOT",
}


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile: the value at or below which ``pct`` percent of them are."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered)) - 1))]


def say(message: str) -> None:
    print(f"[bench] {message}", flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def base_env() -> dict[str, str]:
    """The caller's environment without anything that configures the service."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in _SCRUBBED and not k.startswith(_SCRUBBED_PREFIXES)
    }
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = str(ROOT)
    return env


# --- processes -------------------------------------------------------------------


@dataclass
class Proc:
    """One started process (and its process group)."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    port: int = 0

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def tree_pids(self) -> list[int]:
        """This process and its descendants (uvicorn/granian workers)."""
        import psutil

        try:
            root = psutil.Process(self.pid)
            return [root.pid, *(c.pid for c in root.children(recursive=True))]
        except psutil.Error:
            return []

    def worker_pids(self) -> list[int]:
        """The processes that serve requests: the leaves of the tree, minus helpers."""
        import psutil

        pids = []
        for pid in self.tree_pids():
            try:
                proc = psutil.Process(pid)
                if proc.children():
                    continue
                if any("resource_tracker" in part for part in proc.cmdline()):
                    continue
                pids.append(pid)
            except psutil.Error:
                continue
        return pids


class Processes:
    """Starts processes in their own sessions and ends every one of them on close."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.procs: list[Proc] = []

    def start(
        self, name: str, argv: list[str], *, env: dict[str, str] | None = None, port: int = 0
    ) -> Proc:
        log = self.workdir / f"{name}.log"
        with open(log, "ab") as fh:
            popen = subprocess.Popen(
                argv,
                cwd=ROOT,
                env=env if env is not None else base_env(),
                stdin=subprocess.DEVNULL,
                stdout=fh,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        proc = Proc(name, popen, log, port)
        self.procs.append(proc)
        return proc

    def stop(self, proc: Proc, timeout: float = 10.0) -> None:
        """SIGTERM to the process group this run created, SIGKILL if it lingers."""
        if proc.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.popen.wait(timeout=timeout)
        # Workers left behind in the group (their parent is gone): end them too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        if proc in self.procs:
            self.procs.remove(proc)

    def close(self) -> None:
        for proc in reversed(list(self.procs)):
            try:
                self.stop(proc)
            except Exception as exc:  # keep going: every process must be ended
                say(f"could not stop {proc.name} (pid {proc.pid}): {exc!r}")


@contextlib.contextmanager
def terminate_on_signals() -> Iterator[None]:
    """SIGTERM/SIGHUP become SystemExit, so ``finally`` blocks run and clean up."""

    def _raise(signum: int, _frame: Any) -> None:
        raise SystemExit(128 + signum)

    previous = {sig: signal.signal(sig, _raise) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def wait_http(proc: Proc, url: str, seconds: float = 60.0) -> None:
    """Until ``url`` answers with any HTTP status; fails with the log if the process died."""
    deadline = time.monotonic() + seconds
    while True:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited:\n{proc.log_tail()}")
        try:
            httpx.get(url, timeout=1.0)
            return
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{proc.name} did not answer at {url}:\n{proc.log_tail()}"
                ) from None
            time.sleep(0.1)


def wait_port(proc: Proc, port: int, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while True:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited:\n{proc.log_tail()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{proc.name} did not listen on {port}:\n{proc.log_tail()}"
                ) from None
            time.sleep(0.05)


# --- redis, S3, nginx ----------------------------------------------------------------


def start_redis(
    procs: Processes, name: str = "redis", *, maxmemory: int | None = None
) -> tuple[Proc, str]:
    """A private redis-server without persistence; with ``maxmemory``, allkeys-lru."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    argv += ["--dir", str(procs.workdir)]
    if maxmemory is not None:
        argv += ["--maxmemory", str(maxmemory), "--maxmemory-policy", "allkeys-lru"]
    proc = procs.start(name, argv, port=port)
    wait_port(proc, port)
    return proc, f"redis://127.0.0.1:{port}/0"


def start_s3(procs: Processes) -> tuple[Proc, str]:
    """moto's S3 in server mode in its own process, with a fresh bucket."""
    port = free_port()
    env = base_env()
    # The recorder writes its file into the working directory unless told otherwise.
    env["MOTO_RECORDER_FILEPATH"] = str(procs.workdir / "moto_recording")
    code = (
        "import signal, threading\n"
        "from moto.server import ThreadedMotoServer\n"
        f"server = ThreadedMotoServer(ip_address='127.0.0.1', port={port}, verbose=False)\n"
        "server.start()\n"
        "stop = threading.Event()\n"
        "signal.signal(signal.SIGTERM, lambda *a: stop.set())\n"
        "stop.wait()\n"
        "server.stop()\n"
    )
    proc = procs.start("moto-s3", [PYTHON, "-c", code], env=env, port=port)
    url = f"http://127.0.0.1:{port}"
    wait_http(proc, f"{url}/moto-api/")
    s3_client(url).create_bucket(Bucket=BUCKET)
    return proc, url


def s3_client(endpoint: str):
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=S3_KEY,
        aws_secret_access_key=S3_KEY,
        region_name="us-east-1",
    )


class S3Recorder:
    """moto's request recorder: which requests reached the S3 endpoint."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint

    def start(self) -> None:
        httpx.post(f"{self.endpoint}/moto-api/recorder/reset-recording")
        httpx.post(f"{self.endpoint}/moto-api/recorder/start-recording")

    def stop(self) -> list[dict[str, Any]]:
        import json

        httpx.post(f"{self.endpoint}/moto-api/recorder/stop-recording")
        text = httpx.get(f"{self.endpoint}/moto-api/recorder/download-recording").text
        return [json.loads(line) for line in text.splitlines() if line.strip()]


def start_nginx(procs: Processes, docroot: Path) -> Proc:
    """nginx, one worker, serving ``docroot`` on a loopback port, prefix in the work dir."""
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    prefix = procs.workdir / "nginx"
    prefix.mkdir(exist_ok=True)
    port = free_port()
    template = (BENCH_DIR / "nginx.conf.template").read_text()
    conf = template.replace("@PORT@", str(port)).replace("@PREFIX@", str(prefix))
    conf = conf.replace("@DOCROOT@", str(docroot))
    # Workers of a root master drop to an unprivileged user: let them read the files.
    for path in (procs.workdir, docroot, *docroot.rglob("*")):
        path.chmod(0o755 if path.is_dir() else 0o644)
    conf_path = prefix / "nginx.conf"
    conf_path.write_text(conf)
    proc = procs.start("nginx", [binary, "-p", str(prefix), "-c", str(conf_path)], port=port)
    wait_port(proc, port)
    return proc


# --- the service and the naive baseline ------------------------------------------------


@dataclass
class Stack:
    """Shared back ends of one run: database file, Redis, S3."""

    workdir: Path
    redis_url: str
    s3_url: str
    database_url: str = ""
    api_key: str = ""
    secret_key: str = field(default_factory=lambda: secrets.token_urlsafe(32))

    def __post_init__(self) -> None:
        if not self.database_url:
            self.database_url = f"sqlite:///{self.workdir / 'bench.sqlite3'}"

    def env(self, **overrides: str) -> dict[str, str]:
        """The service's whole configuration, from environment variables only."""
        env = base_env()
        env.update(
            DJANGO_SETTINGS_MODULE="config.settings",
            MEDIACACHE_READ_DOTENV="0",  # this environment only, never a developer's .env
            DATABASE_URL=self.database_url,
            REDIS_URL=self.redis_url,
            S3_BUCKET=BUCKET,
            S3_ENDPOINT_URL=self.s3_url,
            S3_ACCESS_KEY_ID=S3_KEY,
            S3_SECRET_ACCESS_KEY=S3_KEY,
            S3_REGION="us-east-1",
            SECRET_KEY=self.secret_key,
            ALLOWED_HOSTS="127.0.0.1,localhost",
            PUBLIC_BASE_URL="http://127.0.0.1",
            MEDIACACHE_VAR_DIR=str(self.workdir / "var"),
            LOG_LEVEL="WARNING",
            MEDIA_LOG_HITS="0",
            # Plain HTTP on loopback, one client that probes malformed paths.
            SECURE_SSL_REDIRECT="0",
            MEDIA_NOT_FOUND_LIMIT="0",
            # The bench's bodies are an Opus head + noise: nothing a decoder can
            # transcode. Variants are made at upload; serving is what is measured.
            MEDIA_VOICE_VARIANTS="0",
            # The 200 MB large-object run is uploaded through the API too.
            MEDIA_MAX_UPLOAD_BYTES=str(256 * 1024 * 1024),
        )
        env.update(overrides)
        return env

    def manage(self, *args: str) -> str:
        done = subprocess.run(
            [PYTHON, "manage.py", *args],
            cwd=ROOT,
            env=self.env(),
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
        )
        if done.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{done.stderr}")
        return done.stdout

    def prepare_database(self) -> None:
        """Migrate the bench's SQLite file and issue an API key for seeding."""
        self.manage("migrate", "--noinput", "-v", "0")
        self.api_key = self.manage("create_api_key", "bench").strip().splitlines()[-1]

    def objects(self) -> dict[str, str]:
        """media_hash -> S3 key, read straight from the bench's database."""
        query = "SELECT media_hash, file FROM chat_messageattachment"
        if self.database_url.startswith("postgres"):
            import psycopg

            with psycopg.connect(self.database_url) as db:
                return dict(db.execute(query).fetchall())  # type: ignore[arg-type]
        path = self.database_url.removeprefix("sqlite:///")
        with contextlib.closing(sqlite3.connect(path)) as db:
            rows = db.execute("SELECT media_hash, file FROM chat_messageattachment").fetchall()
        return dict(rows)


# "uvicorn" is production's (scripts/serve.sh): httptools with the L1-hit shortcut of
# mediacache.serving.fastpath; "uvicorn-asgi" is stock httptools, every request through ASGI.
SERVERS = ("uvicorn", "uvicorn-asgi", "granian")
FAST_PROTOCOL = "mediacache.fastpath:MediaHttpProtocol"


def server_available(server: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(server.split("-", 1)[0]) is not None


def start_service(
    procs: Processes,
    stack: Stack,
    name: str,
    *,
    server: str,
    workers: int,
    port: int = 0,
    **env: str,
) -> Proc:
    """The service (``config.asgi:application``) on ``port``, or a free one."""
    port = port or free_port()
    if server in ("uvicorn", "uvicorn-asgi"):
        protocol = FAST_PROTOCOL if server == "uvicorn" else "httptools"
        argv = [PYTHON, "-m", "uvicorn", "config.asgi:application"]
        argv += ["--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]
        argv += ["--loop", "uvloop", "--http", protocol, "--no-access-log"]
        argv += ["--no-server-header", "--log-level", "warning", "--lifespan", "on"]
    elif server == "granian":
        argv = [PYTHON, "-m", "granian", "config.asgi:application", "--interface", "asgi"]
        argv += ["--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]
        argv += ["--loop", "uvloop", "--http", "1", "--no-ws", "--log-level", "warning"]
    else:
        raise ValueError(server)
    proc = procs.start(name, argv, env=stack.env(**env), port=port)
    wait_http(proc, f"http://127.0.0.1:{port}/media/x")  # malformed: 404 with no I/O
    wait_workers(proc, workers)
    return proc


def wait_workers(proc: Proc, workers: int, seconds: float = 30.0) -> None:
    """Until every worker process answers (the first one may answer alone at first)."""
    deadline = time.monotonic() + seconds
    while len(proc.worker_pids()) < workers and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.5 if workers > 1 else 0.0)


def start_naive(procs: Processes, stack: Stack) -> Proc:
    """The naive design: a sync Django view + django-redis under one gunicorn sync worker."""
    port = free_port()
    env = base_env()
    env.update(
        DJANGO_SETTINGS_MODULE="bench.naive.settings",
        NAIVE_REDIS_URL=stack.redis_url,
        NAIVE_SECRET_KEY=stack.secret_key,
    )
    argv = [PYTHON, "-m", "gunicorn", "bench.naive.wsgi:application", "--workers", "1"]
    argv += ["--worker-class", "sync", "--bind", f"127.0.0.1:{port}", "--log-level", "warning"]
    proc = procs.start("naive-gunicorn", argv, env=env, port=port)
    wait_http(proc, f"http://127.0.0.1:{port}/media/x")
    return proc


def seed_naive(stack: Stack, media_hash: str, body_path: Path, content_type: str) -> None:
    """Put the body where the naive view looks: ``cache.set("media:<hash>", ...)``."""
    env = base_env()
    env.update(
        DJANGO_SETTINGS_MODULE="bench.naive.settings",
        NAIVE_REDIS_URL=stack.redis_url,
        NAIVE_SECRET_KEY=stack.secret_key,
    )
    subprocess.run(
        [PYTHON, "-m", "bench.naive.seed", media_hash, str(body_path), content_type],
        cwd=ROOT,
        env=env,
        check=True,
        timeout=60,
    )


# --- seeding -------------------------------------------------------------------------


@dataclass(frozen=True)
class Uploaded:
    media_hash: str
    size: int
    sha256: str
    mime_type: str


def upload_many(
    base_url: str, api_key: str, bodies: Iterable[bytes], *, concurrency: int = 4
) -> list[Uploaded]:
    """POST each body to /api/attachments/ (the real upload path), ``concurrency`` at a time."""
    import asyncio

    async def run() -> list[Uploaded]:
        limits = httpx.Limits(max_connections=concurrency)
        headers = {"Authorization": f"Bearer {api_key}"}
        async with httpx.AsyncClient(
            base_url=base_url, headers=headers, limits=limits, timeout=120
        ) as client:
            semaphore = asyncio.Semaphore(concurrency)

            async def one(index: int, body: bytes) -> Uploaded:
                async with semaphore:
                    files = {"file": (f"voice-{index}.ogg", body, "audio/ogg")}
                    response = await client.post("/api/attachments/", files=files)
                if response.status_code != 201:
                    raise RuntimeError(f"upload failed: {response.status_code} {response.text}")
                data = response.json()
                if data["sha256"] != hashlib.sha256(body).hexdigest():
                    raise RuntimeError(f"upload {index}: sha256 mismatch")
                return Uploaded(data["media_hash"], data["size"], data["sha256"], data["mime_type"])

            return await asyncio.gather(*(one(i, b) for i, b in enumerate(bodies)))

    return asyncio.run(run())


@dataclass(frozen=True)
class Seeded:
    index: int
    media_hash: str
    key: str
    size: int
    sha256: str


def seed_bulk(
    stack: Stack, count: int, min_bytes: int, max_bytes: int, seed: int, threads: int = 4
) -> list[Seeded]:
    """``count`` objects through the service's write code in one process (bench/seed.py)."""
    import json

    done = subprocess.run(
        [PYTHON, "-m", "bench.seed", *map(str, (count, min_bytes, max_bytes, seed, threads))],
        cwd=ROOT,
        env=stack.env(),
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )
    if done.returncode != 0:
        raise RuntimeError(f"seeding failed:\n{done.stderr[-3000:]}")
    rows = [Seeded(**json.loads(line)) for line in done.stdout.splitlines() if line.strip()]
    return sorted(rows, key=lambda row: row.index)


def upload_file(base_url: str, api_key: str, path: Path, name: str) -> Uploaded:
    """One (large) file, streamed from disk through the upload API."""
    headers = {"Authorization": f"Bearer {api_key}"}
    with open(path, "rb") as fh:
        response = httpx.post(
            f"{base_url}/api/attachments/",
            headers=headers,
            files={"file": (name, fh, "application/octet-stream")},
            timeout=600,
        )
    if response.status_code != 201:
        raise RuntimeError(f"upload failed: {response.status_code} {response.text[:300]}")
    data = response.json()
    return Uploaded(data["media_hash"], data["size"], data["sha256"], data["mime_type"])


# --- wrk -----------------------------------------------------------------------------

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60_000.0}
_PCT_RE = re.compile(r"^\s*(50|75|90|99)%\s+([\d.]+)(us|ms|s|m)\s*$", re.M)


@dataclass
class WrkResult:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int
    non_2xx: int
    other_cores: float = 0.0


def run_wrk(
    url: str, *, threads: int, connections: int, seconds: int, script: Path | None = None
) -> WrkResult:
    """One bounded wrk run; latency percentiles from ``--latency``; ``script``: a Lua
    file that picks each request (several paths, as bench/scale.py uses)."""
    argv = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", url]
    if script is not None:
        argv[1:1] = ["-s", str(script)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=False)
    out = done.stdout
    if done.returncode != 0 or "Requests/sec" not in out:
        raise RuntimeError(f"wrk failed on {url}:\n{out}\n{done.stderr}")
    pct = {int(p): float(v) * _UNITS[u] for p, v, u in _PCT_RE.findall(out)}
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    errors = 0
    if m := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out):
        errors = sum(int(g) for g in m.groups())
    non_2xx = 0
    if m := re.search(r"Non-2xx or 3xx responses: (\d+)", out):
        non_2xx = int(m.group(1))
    return WrkResult(
        rps, pct.get(50, float("nan")), pct.get(99, float("nan")), requests, errors, non_2xx
    )


class ForeignLoad:
    """CPU used by processes that are not this benchmark's, in cores, over an interval.

    The machine is shared: a busy neighbour skews a run. Busy time from /proc/stat
    minus the CPU time of this run's own processes (services, wrk, this one).
    """

    def __init__(self, procs: Processes) -> None:
        self.procs = procs
        self._start: tuple[float, float, float] | None = None

    @staticmethod
    def _busy_seconds() -> float:
        with open("/proc/stat") as fh:
            fields = [int(v) for v in fh.readline().split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
        return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")

    def _ours(self) -> float:
        import resource

        import psutil

        total = 0.0
        for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
            usage = resource.getrusage(who)
            total += usage.ru_utime + usage.ru_stime
        for proc in self.procs.procs:
            for pid in proc.tree_pids():
                with contextlib.suppress(psutil.Error):
                    times = psutil.Process(pid).cpu_times()
                    total += times.user + times.system
        return total

    def start(self) -> None:
        self._start = (time.monotonic(), self._busy_seconds(), self._ours())

    def stop(self) -> float:
        """Average cores kept busy by others since :meth:`start`."""
        assert self._start is not None
        wall0, busy0, ours0 = self._start
        wall = time.monotonic() - wall0
        foreign = (self._busy_seconds() - busy0) - (self._ours() - ours0)
        return max(0.0, foreign / wall) if wall > 0 else 0.0


def wait_for_quiet(load: ForeignLoad, *, max_wait: float, cores: float = 0.25) -> float:
    """Up to ``max_wait`` seconds until others use under ``cores`` over one second."""
    deadline = time.monotonic() + max_wait
    while True:
        load.start()
        time.sleep(1.0)
        other = load.stop()
        if other <= cores or time.monotonic() >= deadline:
            return other


def rss_bytes(pid: int) -> int:
    """VmRSS of one process, from /proc."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0
