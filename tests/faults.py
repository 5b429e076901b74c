"""Fault tools: a TCP proxy that slows or cuts a link, a private PostgreSQL, the whole
service as a subprocess wired to private dependencies, and a load generator that
checks every byte it gets back.

Used by the short fault tests (``tests/test_faults.py``) and the long runner
(``python -m chaos.run``). Everything listens on 127.0.0.1; every wait is bounded
in time; every process is started here and ended by its pid, also on failure.
The shared PostgreSQL (5432) and Redis (6379) are never touched.

This process never imports Django: the service under test runs in a process of its
own with its own environment, as in production, and so do the small helpers that
need its settings (``python -m tests.faults prepare|rows``, at the end of this file).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import glob
import hashlib
import ipaddress
import json
import logging
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import httpx
import psycopg

from tests.servers import FAST_PROTOCOL, RedisProcess, free_port

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
# Per-request INFO lines from httpx would drown the report of a failed scenario.
logging.getLogger("httpx").setLevel(logging.WARNING)

BUCKET = "chaos-media"
S3_KEY_ID = S3_SECRET = "testing"  # moto accepts any credentials
API = "/api/attachments/"


def _wait_until(check, timeout: float, what: str, interval: float = 0.05) -> None:
    """Poll ``check()`` until it is true; bounded, so a dead dependency fails the run."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except Exception:  # not up yet
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not come up within {timeout:.0f} s")
        time.sleep(interval)


def _end_process(process: subprocess.Popen | None, grace: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds: this one pid only."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


# --- A TCP proxy with faults ---------------------------------------------------------


class Relay:
    """The proxy's insides: an asyncio TCP relay with faults, run by :func:`_proxy_main`."""

    def __init__(self, port: int, upstream: tuple[str, int]) -> None:
        self.port = port
        self.upstream = upstream
        self.latency = 0.0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def listen(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(
                self._relay, "127.0.0.1", self.port, reuse_address=True
            )

    async def cut(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        if server is not None:
            await server.wait_closed()

    async def _relay(self, client_reader, client_writer) -> None:
        self._writers.add(client_writer)
        upstream_writer = None
        try:
            try:
                async with asyncio.timeout(5):
                    upstream_reader, upstream_writer = await asyncio.open_connection(*self.upstream)
            except (OSError, TimeoutError):
                return  # the dependency is down: so is the link (reset below)
            self._writers.add(upstream_writer)
            await asyncio.gather(
                self._pump(client_reader, upstream_writer),
                self._pump(upstream_reader, client_writer),
            )
        finally:
            for writer in (client_writer, upstream_writer):
                if writer is not None:
                    self._writers.discard(writer)
                    writer.transport.abort()

    async def _pump(self, reader, writer) -> None:
        try:
            while data := await reader.read(65536):
                if self.latency:
                    await asyncio.sleep(self.latency)
                writer.write(data)
                await writer.drain()
        except (OSError, RuntimeError):
            pass
        finally:
            writer.transport.abort()  # one side ended: end the other, both ways


async def _proxy_main(port: int, upstream_port: int) -> None:
    """Serve, and obey one command per stdin line: ``latency S``, ``cut``, ``restore``."""
    relay = Relay(port, ("127.0.0.1", upstream_port))
    await relay.listen()
    loop = asyncio.get_running_loop()
    print("ready", flush=True)
    while line := await loop.run_in_executor(None, sys.stdin.readline):
        command, *args = line.split()
        if command == "latency":
            relay.latency = float(args[0])
        elif command == "cut":
            await relay.cut()
        elif command == "restore":
            relay.latency = 0.0
            await relay.listen()
        print("ok", flush=True)
    await relay.cut()  # stdin closed: the test is done with us


class FaultProxy:
    """A TCP proxy between the service and one dependency, with faults on demand.

    ``set_latency(s)``: every chunk waits ``s`` seconds before it is passed on, both
    ways. ``cut()``: stop listening and reset every open connection, as if the
    dependency had stopped; ``restore()`` listens again on the same port. When the
    upstream itself is down the client's connection is reset at once, so a killed
    Redis behind the proxy still looks dead to the service.

    It runs in a process of its own so that relaying never waits for the load
    generator's share of this process's GIL (which would add latency of its own).
    """

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = free_port()
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> FaultProxy:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.faults", "proxy", str(self.port),
             str(self.upstream_port)],
            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        self._expect("ready")
        return self

    def _expect(self, word: str) -> None:
        reply: list[str] = []
        reader = threading.Thread(
            target=lambda: reply.append(self.process.stdout.readline()),  # type: ignore[union-attr]
            daemon=True,  # a proxy that never answers must not keep this process alive
        )
        reader.start()
        reader.join(timeout=15)
        if not reply or reply[0].strip() != word:
            raise RuntimeError(f"fault proxy on {self.port} did not answer {word!r}: {reply}")

    def _command(self, line: str) -> None:
        self.process.stdin.write(line + "\n")  # type: ignore[union-attr]
        self.process.stdin.flush()  # type: ignore[union-attr]
        self._expect("ok")

    def set_latency(self, seconds: float) -> None:
        self._command(f"latency {seconds}")

    def cut(self) -> None:
        """The dependency is gone: refuse new connections, reset open ones."""
        self._command("cut")

    def restore(self) -> None:
        """Listen again, with no added latency."""
        self._command("restore")

    def stop(self) -> None:
        if self.process is not None:
            with contextlib.suppress(OSError):
                self.process.stdin.close()  # type: ignore[union-attr]
            _end_process(self.process, grace=5)
            self.process = None


# --- A private PostgreSQL ------------------------------------------------------------


def _pg_bindir() -> str:
    found = glob.glob("/usr/lib/postgresql/*/bin/initdb")
    if not found:
        raise RuntimeError("PostgreSQL server binaries not found (apt-get install postgresql)")
    newest = max(found, key=lambda p: int(Path(p).parent.parent.name.split(".")[0]))
    return str(Path(newest).parent)


class PostgresCluster:
    """A throwaway cluster (initdb into a temp dir, trust auth, a free port).

    Run as the ``postgres`` OS user when we are root (PostgreSQL refuses root).
    ``fsync=off``: it is disposable; stopping it is what the tests are about.
    """

    def __init__(self) -> None:
        self.bindir = _pg_bindir()
        self.root = tempfile.mkdtemp(prefix="mediacache-pg-")
        self.data = os.path.join(self.root, "data")
        self.port = free_port()
        self.running = False

    def _run(self, *command: str, timeout: float = 60) -> None:
        argv = [os.path.join(self.bindir, command[0]), *command[1:]]
        if os.geteuid() == 0:
            argv = ["runuser", "-u", "postgres", "--", *argv]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{command[0]} failed: {(done.stderr or done.stdout)[-2000:]}")

    def start(self) -> PostgresCluster:
        if not os.path.isdir(self.data):
            if os.geteuid() == 0:
                shutil.chown(self.root, "postgres", "postgres")
            self._run(
                "initdb", "-D", self.data, "-A", "trust", "-U", "postgres",
                "--no-sync", "-E", "UTF8", "--no-locale",
            )  # fmt: skip
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        log = os.path.join(self.root, "server.log")
        self._run("pg_ctl", "-D", self.data, "-l", log, "-o", options, "-w", "-t", "30", "start")
        self.running = True
        return self

    def stop(self, mode: str = "fast") -> None:
        """``fast``: sessions are cut, as in a failover or a restart by the operator."""
        self._run("pg_ctl", "-D", self.data, "-m", mode, "-w", "-t", "30", "stop")
        self.running = False

    def url(self, dbname: str) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{dbname}"

    def connect(self, dbname: str = "postgres") -> psycopg.Connection:
        return psycopg.connect(self.url(dbname), autocommit=True, connect_timeout=5)

    def create_database(self, name: str) -> None:
        with self.connect() as conn:
            conn.execute(f'CREATE DATABASE "{name}"')

    def destroy(self) -> None:
        """Stop the server if one runs (even half-started: its pid file says so), then
        remove the cluster."""
        if os.path.exists(os.path.join(self.data, "postmaster.pid")):
            with contextlib.suppress(Exception):
                self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


# --- moto's S3 and the service, as subprocesses --------------------------------------


class MotoProcess:
    """moto's S3 server in its own process: its state survives a cut of the proxy."""

    def __init__(self) -> None:
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> MotoProcess:
        self.process = subprocess.Popen(
            [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait_until(
            lambda: httpx.get(f"{self.url}/moto-api/", timeout=1).status_code < 500, 30, "moto"
        )
        return self

    def stop(self) -> None:
        _end_process(self.process)
        self.process = None


class ServiceProcess:
    """The whole service (``uvicorn config.asgi:application``, production's protocol)
    with its own environment."""

    def __init__(self, env: dict[str, str], port: int, log_path: str) -> None:
        self.env = env
        self.port = port
        self.log_path = log_path
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ServiceProcess:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [
                    str(BIN / "uvicorn"), "config.asgi:application",
                    "--host", "127.0.0.1", "--port", str(self.port),
                    "--loop", "uvloop", "--http", FAST_PROTOCOL,  # as scripts/serve.sh
                    "--no-access-log", "--log-level", "warning",
                ],
                cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip

        def up() -> bool:
            if self.process is None or self.process.poll() is not None:
                raise RuntimeError(f"the service exited:\n{self.log_tail()}")
            return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200

        deadline = time.monotonic() + 30
        while True:
            try:
                if up():
                    return self
            except RuntimeError:
                raise
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"the service did not start:\n{self.log_tail()}")
            time.sleep(0.1)

    def stop(self) -> None:
        _end_process(self.process)
        self.process = None

    def crash(self) -> None:
        """SIGKILL: no shutdown code runs, like an OOM kill or a lost node."""
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)
            self.process = None

    def rss_bytes(self) -> int | None:
        """Resident memory of the server process (VmRSS), None if it is not running."""
        if self.process is None:
            return None
        try:
            status = Path(f"/proc/{self.process.pid}/status").read_text()
        except OSError:
            return None
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return None

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(Path(self.log_path).read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


# --- A reverse proxy in front of the service -----------------------------------------

_NGINX_CONF = """\
# A reverse proxy as an operator puts one in front (tests/faults.py, NginxProxy).
daemon off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    upstream mediacache {{
        server 127.0.0.1:{upstream};
        keepalive 32;
        keepalive_timeout 4s;  # below uvicorn's 5 s: never reuse a connection it closes
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://mediacache;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            # Appends the address nginx was connected from to what the client sent.
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_read_timeout 300s;  # a limited client's lookups wait their turn
            proxy_max_temp_file_size 0;  # stream big bodies, never spool them to disk
        }}
    }}
}}
"""


class NginxProxy:
    """nginx (Debian's ``nginx-light`` is enough) on a loopback port, proxying to the
    service on ``upstream_port`` with the usual ``X-Forwarded-For`` handling: it
    appends its peer's address, and passes whatever else the client sent along."""

    def __init__(self, upstream_port: int) -> None:
        binary = shutil.which("nginx") or "/usr/sbin/nginx"
        if not os.path.exists(binary):
            raise RuntimeError("nginx is not installed (apt-get install -y nginx-light)")
        self.binary = binary
        self.upstream_port = upstream_port
        self.port = free_port()
        self.prefix = tempfile.mkdtemp(prefix="mediacache-nginx-")
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> NginxProxy:
        conf = os.path.join(self.prefix, "nginx.conf")
        with open(conf, "w") as out:
            out.write(
                _NGINX_CONF.format(prefix=self.prefix, port=self.port, upstream=self.upstream_port)
            )
        self.process = subprocess.Popen(
            [self.binary, "-p", self.prefix, "-c", conf],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        atexit.register(self.stop)

        def up() -> bool:
            if self.process is None or self.process.poll() is not None:
                raise RuntimeError(f"nginx exited:\n{self.log_tail()}")
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            return True

        _wait_until(up, 15, "nginx")
        return self

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = Path(self.prefix, "error.log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        """SIGTERM to the master (it ends its worker), then the prefix is removed."""
        _end_process(self.process)
        self.process = None
        shutil.rmtree(self.prefix, ignore_errors=True)
        atexit.unregister(self.stop)


def gateway_address() -> str:
    """An address of this machine that is not loopback, to send from as a client on
    another machine would (the proxy then forwards a real, untrusted address);
    ``127.0.0.2`` if there is none (still not the proxy's 127.0.0.1)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("198.51.100.1", 9))  # no packet: only picks a source address
            address = str(probe.getsockname()[0])
        except OSError:
            address = ""
    if not address or ipaddress.ip_address(address).is_loopback:
        return "127.0.0.2"
    return address


# --- The stack: the service and its private dependencies -----------------------------


@dataclass
class Stack:
    """The service under faults: private PostgreSQL, Redis and S3, each behind what a
    test needs to break it (Redis and S3 behind a :class:`FaultProxy`).

    ``l1_bytes=0`` by default so every request goes through Redis: with a warm
    in-process tier a Redis fault would go unnoticed. Objects over
    ``cache_max_object_bytes`` are streamed from S3 on every request.
    """

    l1_bytes: int = 0
    cache_max_object_bytes: int = 64 * 1024
    extra_env: dict[str, str] = field(default_factory=dict)
    keep_log: str = ""  # copy the server's log here when the stack is closed

    def __post_init__(self) -> None:
        self.tmp = ""
        self.pg: PostgresCluster | None = None
        self.redis: RedisProcess | None = None
        self.redis_proxy: FaultProxy | None = None
        self.moto: MotoProcess | None = None
        self.s3_proxy: FaultProxy | None = None
        self.service: ServiceProcess | None = None
        self.api_key = ""
        self.env: dict[str, str] = {}
        # Stored objects nobody has fetched yet (see seed()): small ones and big ones.
        self.small_pool: list[StoredObject] = []
        self.big_pool: list[StoredObject] = []
        self._s3 = None

    @property
    def url(self) -> str:
        return self.service.url  # type: ignore[union-attr]

    def __enter__(self) -> Stack:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> Stack:
        atexit.register(self.close)  # a run interrupted mid-way still ends its processes
        self.tmp = tempfile.mkdtemp(prefix="mediacache-chaos-")
        with ThreadPoolExecutor(3) as pool:  # the three dependencies start side by side
            started = [pool.submit(f) for f in (self._start_pg, self._start_redis, self._start_s3)]
            for future in started:
                future.result()
        port = free_port()
        self.env = self._service_env(port)
        self.service = ServiceProcess(self.env, port, os.path.join(self.tmp, "service.log"))
        with ThreadPoolExecutor(1) as pool:
            # migrate + create_api_key in one child (one Django start-up, not two), while
            # the server starts: it needs the tables only for its first request.
            prepared = pool.submit(self.child, "prepare")
            self.service.start()
            self.api_key = prepared.result().strip().splitlines()[-1]
        return self

    def _start_pg(self) -> None:
        self.pg = PostgresCluster()
        self.pg.start()
        self.pg.create_database("mediacache")

    def _start_redis(self) -> None:
        self.redis = RedisProcess()
        self.redis.start()
        self.redis_proxy = FaultProxy(self.redis.port)
        self.redis_proxy.start()

    def _start_s3(self) -> None:
        self.moto = MotoProcess()
        self.moto.start()
        self.s3_proxy = FaultProxy(self.moto.port)
        self.s3_proxy.start()
        self.s3().create_bucket(Bucket=BUCKET)

    def child(self, command: str, stdin: str = "") -> str:
        """``python -m tests.faults <command>`` with the service's settings (see the end)."""
        done = subprocess.run(
            [sys.executable, "-m", "tests.faults", command],
            input=stdin, cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=180,
            check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"tests.faults {command} failed:\n{done.stderr[-3000:]}")
        return done.stdout

    def _service_env(self, port: int) -> dict[str, str]:
        keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")
        env = {name: os.environ[name] for name in keep if name in os.environ}
        env.update(
            DJANGO_SETTINGS_MODULE="config.settings",
            MEDIACACHE_READ_DOTENV="0",  # this environment only, never a developer's .env
            SECRET_KEY="chaos-only-" + "x" * 50,
            DEBUG="false",
            ALLOWED_HOSTS="*",
            PUBLIC_BASE_URL=f"http://127.0.0.1:{port}",
            SECURE_SSL_REDIRECT="false",
            DATABASE_URL=self.pg.url("mediacache"),  # type: ignore[union-attr]
            REDIS_URL=f"redis://127.0.0.1:{self.redis_proxy.port}/0",  # type: ignore[union-attr]
            S3_BUCKET=BUCKET,
            S3_ENDPOINT_URL=f"http://127.0.0.1:{self.s3_proxy.port}",  # type: ignore[union-attr]
            S3_ACCESS_KEY_ID=S3_KEY_ID,
            S3_SECRET_ACCESS_KEY=S3_SECRET,
            S3_REGION="us-east-1",
            MEDIACACHE_VAR_DIR=os.path.join(self.tmp, "var"),
            MEDIA_L1_BYTES=str(self.l1_bytes),
            MEDIA_CACHE_MAX_OBJECT_BYTES=str(self.cache_max_object_bytes),
            MEDIA_LOG_HITS="false",
            LOG_LEVEL="WARNING",
        )
        env.update(self.extra_env)
        return env

    def manage(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """``manage.py`` against this stack (same environment as the server)."""
        done = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        if check and done.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
        return done

    def s3(self):
        """A client straight to moto (not through the proxy): to check what is stored.

        Made once: building a boto3 client holds the GIL long enough to delay the
        load generator's requests, which would then be counted against the server.
        """
        if self._s3 is None:
            self._s3 = boto3.client(
                "s3",
                endpoint_url=self.moto.url,  # type: ignore[union-attr]
                aws_access_key_id=S3_KEY_ID,
                aws_secret_access_key=S3_SECRET,
                region_name="us-east-1",
            )
        return self._s3

    def object_keys(self, prefix: str = "chat/") -> set[str]:
        keys: set[str] = set()
        for page in (
            self.s3().get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
        ):
            keys.update(item["Key"] for item in page.get("Contents", []))
        return keys

    def db(self) -> psycopg.Connection:
        return self.pg.connect("mediacache")  # type: ignore[union-attr]

    def attachment_keys(self) -> set[str]:
        """Every object key a row points to: the upload, and its variant if the model has one."""
        with self.db() as conn:
            columns = [
                row[0]
                for row in conn.execute(
                    "SELECT column_name FROM information_schema.columns WHERE table_name ="
                    " 'chat_messageattachment' AND column_name IN ('file', 'variant')"
                )
            ]
            keys: set[str] = set()
            for column in columns:
                keys.update(
                    row[0]
                    for row in conn.execute(f"SELECT {column} FROM chat_messageattachment")
                    if row[0]
                )
            return keys

    def close(self) -> None:
        """End everything this stack started, each by its own handle; never raises."""
        for step in (
            lambda: self.service and self.service.stop(),
            lambda: self.s3_proxy and self.s3_proxy.stop(),
            lambda: self.moto and self.moto.stop(),
            lambda: self.redis_proxy and self.redis_proxy.stop(),
            lambda: self.redis and self.redis.kill(),
            lambda: self.pg and self.pg.destroy(),
        ):
            with contextlib.suppress(Exception):
                step()
        self.service = self.s3_proxy = self.moto = self.redis_proxy = self.redis = self.pg = None
        if self.tmp:
            if self.keep_log:
                with contextlib.suppress(OSError):
                    shutil.copyfile(os.path.join(self.tmp, "service.log"), self.keep_log)
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = ""
        atexit.unregister(self.close)


# --- What was uploaded, to check what comes back -------------------------------------


@dataclass(slots=True)
class StoredObject:
    media_hash: str
    url: str
    body: bytes
    sha256: str
    key: str = ""

    @property
    def size(self) -> int:
        return len(self.body)


@dataclass
class Corpus:
    """Objects the load generator knows the bytes of.

    ``hot``: fetched before, so cached; ``cold``: uploaded, never fetched (a request
    for one is a miss; it moves to ``hot`` once served); ``big``: over the cache
    size cap, streamed from the store on every request.
    """

    hot: list[StoredObject] = field(default_factory=list)
    cold: list[StoredObject] = field(default_factory=list)
    big: list[StoredObject] = field(default_factory=list)

    def everything(self) -> dict[str, StoredObject]:
        return {o.media_hash: o for o in (*self.hot, *self.cold, *self.big)}


def random_body(rng: random.Random, low: int, high: int) -> bytes:
    return rng.randbytes(rng.randint(low, high))


# Random bytes alone are sniffed as some odd type about 1% of the time (an MPEG-4 audio
# stream, a BIOS logo), and an upload that claims to be audio it is not is rightly
# refused: a PDF header keeps every upload a plain document (served as an attachment).
_PDF_HEAD = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n"


def upload_body(rng: random.Random, low: int, high: int) -> bytes:
    """Bytes to upload: random, behind a PDF header so the sniffed type is always the same."""
    return _PDF_HEAD + random_body(rng, low, high)


async def upload_one(
    client: httpx.AsyncClient, body: bytes, name: str = "blob.bin"
) -> httpx.Response:
    return await client.post(API, files={"file": (name, body)})


def stored_from(response: httpx.Response, body: bytes) -> StoredObject:
    created = response.json()
    return StoredObject(created["media_hash"], created["short_url"], body, created["sha256"])


SMALL = (1024, 24 * 1024)  # bytes: voice notes, stickers, thumbnails
BIG = (80 * 1024, 160 * 1024)  # over the stack's cache cap: streamed every time


def make_objects(
    stack: Stack, count: int, size: tuple[int, int], rng: random.Random
) -> list[StoredObject]:
    """Fresh objects, written the way an upload writes them: the object, then its row.

    Straight to S3 and, through the ORM in a child process with the service's
    settings, to PostgreSQL: fast enough for the short suite, whatever columns the
    model has grown, and it leaves the upload path to the scenarios that test it.
    """
    day = datetime.now(UTC)
    objects = []
    for _ in range(count):
        body = random_body(rng, *size)
        media_hash = secrets.token_urlsafe(16)
        key = f"chat/{day:%Y/%m/%d}/{uuid.uuid4().hex}.bin"
        obj = StoredObject(media_hash, f"{stack.url}/media/{media_hash}", body,
                           hashlib.sha256(body).hexdigest(), key)  # fmt: skip
        objects.append(obj)
    s3 = stack.s3()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda o: s3.put_object(Bucket=BUCKET, Key=o.key, Body=o.body), objects))
    rows = [
        {"key": o.key, "size": o.size, "sha256": o.sha256, "media_hash": o.media_hash,
         "short_url": o.url}
        for o in objects
    ]  # fmt: skip
    stack.child("rows", json.dumps(rows))
    return objects


def _prepare_main() -> None:
    """``python -m tests.faults prepare``: migrate, then print a new API key."""
    import django

    django.setup()
    from io import StringIO

    from django.core.management import call_command

    call_command("migrate", interactive=False, verbosity=0)
    out = StringIO()
    call_command("create_api_key", "chaos", stdout=out)
    print(out.getvalue().strip().splitlines()[-1])


def _rows_main() -> None:
    """``python -m tests.faults rows``: attachment rows from JSON on stdin, via the ORM."""
    import django

    django.setup()
    from django.utils import timezone

    from chat.models import MessageAttachment

    now = timezone.now()
    rows = []
    for row in json.load(sys.stdin):
        attachment = MessageAttachment(
            original_filename="seed.bin", mime_type="application/octet-stream",
            size=row["size"], sha256=row["sha256"], media_hash=row["media_hash"],
            short_url=row["short_url"], created_at=now, expires_at=now + timedelta(days=30),
        )  # fmt: skip
        attachment.file.name = row["key"]
        rows.append(attachment)
    MessageAttachment.objects.bulk_create(rows, batch_size=500)


def seed(stack: Stack, *, hot: int, cold: int, big: int, seed: int = 0) -> Corpus:
    """Objects never served before (from the stack's pools, topped up in bulk);
    the ``hot`` ones are then fetched through the service until they are cached."""
    rng = random.Random(seed)
    for pool, count, size in ((stack.small_pool, hot + cold, SMALL), (stack.big_pool, big, BIG)):
        if len(pool) < count:
            pool.extend(make_objects(stack, max(count - len(pool), 5 * count), size, rng))
    small = [stack.small_pool.pop() for _ in range(hot + cold)]
    corpus = Corpus(
        hot=small[:hot], cold=small[hot:], big=[stack.big_pool.pop() for _ in range(big)]
    )
    with httpx.Client(timeout=30) as client:
        for obj in corpus.hot:
            _cache(client, obj, stack)
    return corpus


def _cache(client: httpx.Client, obj: StoredObject, stack: Stack, within: float = 10.0) -> None:
    """Fetch until the answer is a HIT: a MISS fills Redis only when its breaker is closed,
    so one fetch does not prove the object is cached (and "hot" must mean cached)."""
    deadline = time.monotonic() + within
    while True:
        response = client.get(obj.url)
        if response.status_code != 200 or response.content != obj.body:
            raise RuntimeError(
                f"seed fetch of {obj.media_hash}: {response.status_code} {response.text}\n"
                + stack.service.log_tail()  # type: ignore[union-attr]
            )
        if response.headers.get("x-cache") == "HIT":
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{obj.media_hash} was not cached within {within:.0f} s")
        time.sleep(0.05)


@contextlib.asynccontextmanager
async def client_for(stack: Stack, connections: int):
    # Idle connections are dropped after 2 s, well before uvicorn closes them (5 s):
    # with both at 5 s a request sent on a connection the server is closing gets
    # "Server disconnected without sending a response", a client artefact.
    limits = httpx.Limits(
        max_connections=connections, max_keepalive_connections=connections, keepalive_expiry=2.0
    )
    async with httpx.AsyncClient(
        base_url=stack.url,
        headers={"Authorization": f"Bearer {stack.api_key}"},
        timeout=httpx.Timeout(60, connect=5),
        limits=limits,
    ) as client:
        yield client


# --- The load generator --------------------------------------------------------------


@dataclass(slots=True)
class Sample:
    """One request: what was asked, in which phase, and what came back."""

    at: float  # monotonic start time
    phase: str
    kind: str  # hot, cold, big, range, upload
    status: int  # 0: no HTTP answer (connection refused or reset, timeout)
    latency: float
    x_cache: str = ""
    mismatch: bool = False
    retry_after: bool = False
    json_error: bool = False
    media_hash: str = ""
    error: str = ""


@dataclass
class Summary:
    requests: int
    by_status: Counter
    mismatched: int
    max_latency: float
    p50: float
    p99: float

    def failures(self) -> dict[str, int]:
        """Anything but 2xx, by status ("ERR": no HTTP answer)."""
        return {
            ("ERR" if status == 0 else str(status)): count
            for status, count in sorted(self.by_status.items())
            if not 200 <= status < 300
        }


def quantile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summarize(samples: list[Sample]) -> Summary:
    latencies = [s.latency for s in samples]
    return Summary(
        requests=len(samples),
        by_status=Counter(s.status for s in samples),
        mismatched=sum(s.mismatch for s in samples),
        max_latency=max(latencies, default=0.0),
        p50=quantile(latencies, 0.50),
        p99=quantile(latencies, 0.99),
    )


def answered(sample: Sample, response: httpx.Response) -> Sample:
    """Fill ``sample`` from an HTTP answer (latency measured up to now, body read)."""
    sample.latency = time.monotonic() - sample.at
    sample.status = response.status_code
    sample.x_cache = response.headers.get("x-cache", "")
    sample.retry_after = "retry-after" in response.headers
    if response.status_code >= 400:
        with contextlib.suppress(ValueError, AttributeError):
            sample.json_error = bool(response.json().get("error"))
    return sample


def failed(sample: Sample, exc: Exception) -> Sample:
    """Fill ``sample`` for a request that got no HTTP answer."""
    sample.latency = time.monotonic() - sample.at
    sample.error = f"{type(exc).__name__}: {exc}"[:200]
    return sample


DEFAULT_MIX = {"hot": 55, "range": 10, "cold": 10, "big": 10, "upload": 15}


class LoadGenerator:
    """Requests at a steady rate from ``concurrency`` workers, in a thread of its own.

    Bounded by ``duration`` seconds and ``max_requests``. The mix (weights by kind)
    and the phase label can be changed while it runs: a scenario sets
    ``load.phase = "outage"`` when it injects the fault. Every 200/206 body is
    checked against what was uploaded, every 201 against the sha256 sent.
    """

    def __init__(
        self,
        stack: Stack,
        corpus: Corpus,
        *,
        mix: dict[str, int] | None = None,
        concurrency: int = 8,
        rate: float = 100.0,
        duration: float = 30.0,
        max_requests: int = 100_000,
        seed: int = 1,
    ) -> None:
        self.stack = stack
        self.corpus = corpus
        self.mix = dict(mix or DEFAULT_MIX)
        self.concurrency = concurrency
        self.rate = rate
        self.duration = duration
        self.max_requests = max_requests
        self.phase = "before"
        self.samples: list[Sample] = []
        self._rng = random.Random(seed)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._issued = 0
        self.failure: BaseException | None = None

    def start(self) -> LoadGenerator:
        self._thread = threading.Thread(target=self._run, name="load-generator", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> list[Sample]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.duration + 90)
        if self.failure is not None:
            raise RuntimeError("the load generator failed") from self.failure
        return self.samples

    @contextlib.contextmanager
    def running(self) -> Iterator[LoadGenerator]:
        self.start()
        try:
            yield self
        finally:
            self.stop()

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported by stop()
            self.failure = exc

    async def _main(self) -> None:
        deadline = time.monotonic() + self.duration
        async with client_for(self.stack, self.concurrency) as client:
            await asyncio.gather(
                *(self._worker(client, i, deadline) for i in range(self.concurrency))
            )

    async def _worker(self, client: httpx.AsyncClient, index: int, deadline: float) -> None:
        interval = self.concurrency / self.rate
        due = time.monotonic() + interval * index / self.concurrency
        while not self._stop.is_set() and self._issued < self.max_requests:
            now = time.monotonic()
            if now >= deadline:
                return
            if due > now:
                await asyncio.sleep(min(due - now, deadline - now))
                continue
            due = max(due + interval, now)  # late: no burst to catch up
            self._issued += 1
            kinds, weights = zip(*self.mix.items(), strict=True)
            kind = self._rng.choices(kinds, weights)[0]
            self.samples.append(await self._request(client, kind))

    async def _request(self, client: httpx.AsyncClient, kind: str) -> Sample:
        corpus, rng = self.corpus, self._rng
        obj: StoredObject | None = None
        headers: dict[str, str] = {}
        span: tuple[int, int] | None = None
        if kind == "cold":
            obj = corpus.cold.pop(0) if corpus.cold else None
            if obj is None:
                kind = "hot"  # none left: still a request, counted as what it is
        if kind == "big":
            obj = rng.choice(corpus.big) if corpus.big else None
            kind = kind if obj else "hot"
        if kind in ("hot", "range"):
            obj = rng.choice(corpus.hot)
            if kind == "range":
                start = rng.randrange(obj.size)
                span = (start, rng.randrange(start, obj.size))
                headers["Range"] = f"bytes={span[0]}-{span[1]}"
        body = upload_body(rng, 1024, 24 * 1024) if kind == "upload" else b""
        sample = Sample(time.monotonic(), self.phase, kind, 0, 0.0)
        try:
            if kind == "upload":
                response = await upload_one(client, body)
            else:
                sample.media_hash = obj.media_hash  # type: ignore[union-attr]
                response = await client.get(obj.url, headers=headers)  # type: ignore[union-attr]
        except httpx.HTTPError as exc:
            failed(sample, exc)
            if kind == "cold":
                corpus.cold.append(obj)  # type: ignore[arg-type]
            return sample
        answered(sample, response)
        if kind == "upload":
            if response.status_code == 201:
                created = stored_from(response, body)
                sample.media_hash = created.media_hash
                sample.mismatch = created.sha256 != hashlib.sha256(body).hexdigest()
                corpus.cold.append(created)
            return sample
        expected = obj.body if span is None else obj.body[span[0] : span[1] + 1]  # type: ignore[union-attr]
        if response.status_code in (200, 206):
            sample.mismatch = response.content != expected
        if kind == "cold":
            served = response.status_code == 200 and not sample.mismatch
            (corpus.hot if served else corpus.cold).append(obj)  # type: ignore[arg-type]
        return sample


class RssSampler:
    """VmRSS of the server process once a second, in a thread, while a scenario runs."""

    def __init__(self, service: ServiceProcess, interval: float = 1.0) -> None:
        self.service = service
        self.interval = interval
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            rss = self.service.rss_bytes()
            if rss is not None:
                self.samples.append((time.monotonic(), rss))
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        rss = self.service.rss_bytes()
        if rss is not None:
            self.samples.append((time.monotonic(), rss))

    def growth(self, skip_fraction: float = 0.0) -> int | None:
        """RSS at the end minus RSS after the first ``skip_fraction`` of the run (warm-up)."""
        if len(self.samples) < 2:
            return None
        start = self.samples[min(len(self.samples) - 2, int(len(self.samples) * skip_fraction))]
        return self.samples[-1][1] - start[1]


if __name__ == "__main__":
    if sys.argv[1:2] == ["proxy"]:
        asyncio.run(_proxy_main(int(sys.argv[2]), int(sys.argv[3])))
    elif sys.argv[1:2] == ["rows"]:
        _rows_main()
    elif sys.argv[1:2] == ["prepare"]:
        _prepare_main()
    else:
        sys.exit("usage: python -m tests.faults proxy LISTEN_PORT UPSTREAM_PORT | rows | prepare")
