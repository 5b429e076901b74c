"""``make scale``: Mediacache past one process, on loopback, measured in one table.

Starts 2 replicas (``scripts/serve.sh``, 2 workers each) behind nginx with the
balancer recipe (``deploy/nginx/balancer.conf``: one media hash to one replica), on
PostgreSQL (a database of its own on ``SCALE_DATABASE_URL``'s server, dropped at the
end), moto's S3 and a Redis topology; two edge caches in front of the replicas: nginx
with ``deploy/edge/nginx-edge.conf`` and Varnish with ``deploy/edge/mediacache.vcl``,
the one ``--purged-edge`` names (nginx by default) purged by the replicas' own hook
(``MEDIA_EDGE_PURGE``); and nginx serving the same file from disk, the edges'
yardstick. Then, per topology:

* hit req/s through the balancer (wrk over 64 objects, so both replicas serve);
* Redis-hit req/s (the replicas restarted with ``MEDIA_L1_BYTES=0``);
* delete-visible: a delete through replica A, until replica B answers 404 (p50/p99 ms);
* stampede: 200 concurrent cold GETs of one object, half to each replica: S3 GETs;
* failover: GETs through the balancer, every body checked, while a Redis master is
  SIGKILLed (Sentinel: the master, its replica promoted; Cluster: one of 3 masters,
  started again 5 s later; Cluster with replicas: one of 3 masters, its replica
  promoted; standalone: the server, started again, empty, 5 s later): errors, wrong
  bytes, the recovery (from the kill until objects read through one replica are Redis
  hits on the other; tests/test_redis_failover.py's method), and the S3 GETs from the
  kill to the end of the run against the objects they were for (moto's recorder);

and the edge lines: hit req/s through each edge against nginx from disk (alternating
rounds, best shown; target >= 90%), and how long a deleted object stays at the purged
edge. ``--edge-only`` measures the edge lines alone (on the first topology).

Topologies: ``TOPOLOGIES`` maps a name to a ``tests/redis_topologies.py`` class
(``standalone``, ``sentinel``: master + replica + 3 sentinels, ``cluster``: 3 masters,
``cluster-replicas``: 3 masters + 3 replicas);
``--topologies standalone,sentinel,cluster,cluster-replicas`` measures every row the
same way, one topology after the other.

Everything started is stopped at the end, on an error, on Ctrl-C and on SIGTERM: the
services, nginx, Varnish and moto are in one ``Processes`` (each in its own session:
SIGTERM to the group, then SIGKILL after 10 s); the redis-server processes of the
topologies are children of this process, not in sessions of their own, so they are
kept apart and stopped by pid (each SIGTERM, then SIGKILL after 10 s).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import statistics
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from tests.nginx_edge import nginx_edge_argv
from tests.redis_topologies import Cluster, ClusterWithReplicas, Node, Sentinel, Standalone
from tests.redis_topologies import Topology as RedisSide
from tests.varnish import varnish_argv

from bench.bodies import body_for
from bench.client import Connection
from bench.infra import (
    BENCH_DIR,
    BUCKET,
    ROOT,
    Proc,
    Processes,
    S3Recorder,
    Stack,
    WrkResult,
    free_port,
    percentile,
    run_wrk,
    say,
    start_s3,
    terminate_on_signals,
    upload_many,
    wait_http,
    wait_port,
)

BODY_BYTES = 50 * 1024
DEFAULT_DATABASE = "postgres://postgres@127.0.0.1:5432/postgres"

# name -> the Redis side of the topology, not started yet (``tests/redis_topologies.py``:
# redis-server processes of this process, not in sessions of their own, so they are
# kept apart from ``Processes`` and stopped by ``main``'s ``finally``).
TOPOLOGIES: dict[str, Callable[[], RedisSide]] = {
    "standalone": Standalone,
    "sentinel": Sentinel,
    "cluster": Cluster,
    "cluster-replicas": ClusterWithReplicas,
}

FAILOVER_DEADLINE = 30.0  # seconds Redis hits may take to come back before giving up
RESTART_AFTER = 5.0  # standalone and cluster: the killed node is started again after this
CHANNEL_LOG = "invalidation channel"  # the listener's log lines: lost, back
RECOVERED_AFTER = 5  # probes in a row that hit


@dataclass
class Row:
    topology: str
    hit_rps: float = 0.0
    direct_rps: float = 0.0
    redis_rps: float = 0.0
    delete_ms: float = 0.0
    delete_p50_ms: float = 0.0
    delete_p99_ms: float = 0.0
    stampede: list[int] = field(default_factory=list)
    failover: Failover | None = None


@dataclass
class Failover:
    """A Redis master killed under load through the balancer: what the clients saw."""

    requests: int = 0
    errors: int = 0  # non-200 answers and transport errors
    wrong_bytes: int = 0
    recovery_s: float | None = None  # None: Redis hits not back within the deadline
    restarted_s: float | None = None  # when the killed node was started again
    kinds: dict[str, int] = field(default_factory=dict)  # "load HTTP 502": 1, ...
    timeline: list[tuple[float, bool]] = field(default_factory=list)
    s3_gets: int = 0  # from the kill to the end: what the outage cost S3
    s3_objects: int = 0  # the objects those GETs were for
    s3_max_per_object: int = 0
    channel_logs: int = 0  # the replicas' invalidation-channel log lines (lost, back)


EDGES = ("nginx", "varnish")  # the edge caches measured, and the purge style of each


@dataclass
class EdgeLine:
    """Per target (``static``: nginx from disk, then each of ``EDGES``): wrk results and
    CPU microseconds per answer, per round (what the neighbours' load on a shared
    machine changes least); and the delete-visible times at the purged edge."""

    results: dict[str, list[WrkResult]] = field(default_factory=dict)
    cpu_us: dict[str, list[float]] = field(default_factory=dict)
    purged: str = "nginx"
    gone_ms: list[float] = field(default_factory=list)


def cpu_seconds(proc: Proc) -> float:
    """User + system CPU of a process and its children (nginx's workers, Varnish's child)."""
    import psutil

    total = 0.0
    for pid in set(proc.tree_pids()):
        try:
            times = psutil.Process(pid).cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--topologies", default="standalone", help=f"comma-separated: {', '.join(TOPOLOGIES)}"
    )
    parser.add_argument("--seconds", type=int, default=10, help="each wrk run (10)")
    parser.add_argument("--rounds", type=int, default=3, help="edge rounds, alternating (3)")
    parser.add_argument("--deletes", type=int, default=50, help="deletes measured (50)")
    parser.add_argument("--stampedes", type=int, default=3, help="stampede repeats (3)")
    parser.add_argument(
        "--database",
        default=DEFAULT_DATABASE,
        help="a PostgreSQL server's URL; a database of its own is made there and dropped",
    )
    parser.add_argument(
        "--probes", type=int, default=90, help="failover probe objects, 2 GETs each (90)"
    )
    parser.add_argument(
        "--purged-edge",
        choices=EDGES,
        default="nginx",
        help="the edge the replicas purge (MEDIA_EDGE_PURGE) and delete-visible is measured at",
    )
    parser.add_argument(
        "--edge-only", action="store_true", help="only the edge lines, on the first topology"
    )
    parser.add_argument("--quick", action="store_true", help="short runs, fewer objects")
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.rounds, args.deletes, args.stampedes = 3, 1, 10, 1
        args.probes = 60
    return args


# --- PostgreSQL: a database of this run's own ------------------------------------------


def create_database(server_url: str) -> tuple[str, Callable[[], None]]:
    """(the new database's URL, a function that drops it)."""
    import psycopg

    name = f"mediacache_scale_{int(time.time())}"
    parts = urlsplit(server_url)
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = parts._replace(path=f"/{name}").geturl()

    def drop() -> None:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return url, drop


# --- the replicas, the balancer, the edge ----------------------------------------------


def start_replica(procs: Processes, stack: Stack, name: str, **env: str) -> Proc:
    port = free_port()
    environment = stack.env(
        HOST="127.0.0.1",
        PORT=str(port),
        WEB_CONCURRENCY="2",
        GRACEFUL_TIMEOUT="3",
        PROMETHEUS_MULTIPROC_DIR=str(procs.workdir / f"metrics-{name}"),
        **env,
    )
    proc = procs.start(name, ["bash", str(ROOT / "scripts" / "serve.sh")], env=environment)
    proc.port = port
    wait_http(proc, f"http://127.0.0.1:{port}/healthz", seconds=90)
    time.sleep(1.0)  # the second worker
    return proc


def nginx_prefix(procs: Processes, name: str) -> Path:
    prefix = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=procs.workdir))
    for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (prefix / kind).mkdir()
    return prefix


def nginx_head(prefix: Path) -> str:
    temps = "".join(f"    {k}_temp_path {prefix}/{k};\n" for k in ("client_body", "proxy"))
    temps += "".join(f"    {k}_temp_path {prefix}/{k};\n" for k in ("fastcgi", "uwsgi", "scgi"))
    return (
        f"daemon off;\nworker_processes auto;\npid {prefix}/nginx.pid;\n"
        f"error_log {prefix}/error.log warn;\nevents {{ worker_connections 1024; }}\n"
        f"http {{\n    access_log off;\n    keepalive_requests 1000000;\n{temps}"
    )


def start_balancer(procs: Processes, replicas: list[Proc]) -> Proc:
    """nginx with deploy/nginx/balancer.conf as shipped but for its listen line."""
    prefix = nginx_prefix(procs, "balancer")
    port = free_port()
    (prefix / "mediacache-replicas.conf").write_text(
        "".join(f"server 127.0.0.1:{r.port} max_fails=1 fail_timeout=5s;\n" for r in replicas)
    )
    recipe = (ROOT / "deploy" / "nginx" / "balancer.conf").read_text()
    (prefix / "balancer.conf").write_text(recipe.replace("listen 80;", f"listen 127.0.0.1:{port};"))
    (prefix / "nginx.conf").write_text(nginx_head(prefix) + "    include balancer.conf;\n}\n")
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    proc = procs.start(
        "nginx-balancer", [binary, "-p", str(prefix), "-c", str(prefix / "nginx.conf")], port=port
    )
    wait_port(proc, port)
    return proc


def start_static(procs: Processes, body: bytes, media_hash: str) -> Proc:
    """nginx serving the same body from disk, as bench/nginx.conf.template does."""
    prefix = nginx_prefix(procs, "static")
    docroot = prefix / "docroot"
    (docroot / "media").mkdir(parents=True)
    (docroot / "media" / media_hash).write_bytes(body)
    for path in (procs.workdir, prefix, docroot, *docroot.rglob("*")):
        path.chmod(0o755 if path.is_dir() else 0o644)
    port = free_port()
    template = (BENCH_DIR / "nginx.conf.template").read_text()
    conf = template.replace("@PORT@", str(port)).replace("@PREFIX@", str(prefix))
    conf = conf.replace("@DOCROOT@", str(docroot))
    conf = conf.replace("worker_processes 1;", "worker_processes auto;")  # as Varnish: all cores
    # As deploy/edge/nginx-edge.conf: a listening socket per worker, the connections spread
    # evenly over them (else one worker may take most of wrk's 16 and the rounds swing).
    listen = f"listen 127.0.0.1:{port};"
    if listen not in conf:
        raise RuntimeError(f"bench/nginx.conf.template: no {listen!r} to add reuseport to")
    conf = conf.replace(listen, f"listen 127.0.0.1:{port} reuseport;")
    (prefix / "nginx.conf").write_text(conf)
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    proc = procs.start(
        "nginx-static", [binary, "-p", str(prefix), "-c", str(prefix / "nginx.conf")], port=port
    )
    wait_port(proc, port)
    return proc


def start_varnish(procs: Processes, port: int, replicas: list[Proc]) -> Proc:
    argv = varnish_argv(procs.workdir / "varnish", port, [("127.0.0.1", r.port) for r in replicas])
    proc = procs.start("varnish", argv, port=port)
    wait_http(proc, f"http://127.0.0.1:{port}/healthz", seconds=30)
    return proc


def start_nginx_edge(procs: Processes, port: int, replicas: list[Proc]) -> Proc:
    """nginx with deploy/edge/nginx-edge.conf as shipped but for its listen lines, cache
    folder, pid and log (tests/nginx_edge.py)."""
    argv = nginx_edge_argv(
        procs.workdir / "nginx-edge", port, [("127.0.0.1", r.port) for r in replicas], free_port()
    )
    proc = procs.start("nginx-edge", argv, port=port)
    wait_http(proc, f"http://127.0.0.1:{port}/healthz", seconds=30)
    return proc


EDGE_STARTERS: dict[str, Callable[[Processes, int, list[Proc]], Proc]] = {
    "nginx": start_nginx_edge,
    "varnish": start_varnish,
}


# --- measurements ----------------------------------------------------------------------


def wrk_script(procs: Processes, paths: list[str]) -> Path:
    """A wrk Lua script that walks ``paths`` in turn."""
    script = procs.workdir / f"paths-{len(paths)}.lua"
    items = ", ".join(f'"{p}"' for p in paths)
    script.write_text(
        f"local paths = {{{items}}}\nlocal i = 0\n"
        "request = function()\n  i = i % #paths + 1\n"
        '  return wrk.format("GET", paths[i])\nend\n'
    )
    return script


def wrk(url: str, seconds: int, script: Path | None = None) -> WrkResult:
    result = run_wrk(url, threads=2, connections=16, seconds=seconds, script=script)
    if result.errors or result.non_2xx:
        raise RuntimeError(f"{url}: {result.errors} errors, {result.non_2xx} non-2xx")
    return result


def warm(base: str, paths: list[str], times: int = 4) -> None:
    with httpx.Client(base_url=base, timeout=30) as client:
        for _ in range(times):
            for path in paths:
                response = client.get(path)
                if response.status_code != 200:
                    raise RuntimeError(f"{base}{path}: {response.status_code}")


def delete_visible(
    stack: Stack, a: Proc, b: Proc, bodies: list[bytes]
) -> tuple[list[float], list[float]]:
    """Per object: delete through replica A; (ms the DELETE took, ms from its 204 until
    replica B answers 404). Every worker of B held the object first (fresh connections)."""
    objects = upload_many(f"http://127.0.0.1:{a.port}", stack.api_key, bodies)
    headers = {"Authorization": f"Bearer {stack.api_key}"}
    ids = _ids(stack, [o.media_hash for o in objects])
    took: list[float] = []
    elapsed: list[float] = []
    for obj in objects:
        path = f"/media/{obj.media_hash}"
        for _ in range(6):  # new connections: the kernel spreads them over B's workers
            if httpx.get(f"http://127.0.0.1:{b.port}{path}", timeout=10).status_code != 200:
                raise RuntimeError(f"{path} not served by replica B")
        started = time.perf_counter()
        response = httpx.delete(
            f"http://127.0.0.1:{a.port}/api/attachments/{ids[obj.media_hash]}",
            headers=headers,
            timeout=30,
        )
        answered = time.perf_counter()
        if response.status_code != 204:
            raise RuntimeError(f"delete {path}: {response.status_code}")
        took.append((answered - started) * 1000)
        elapsed.append(_until_gone(f"http://127.0.0.1:{b.port}{path}", answered))
    return took, elapsed


def _until_gone(url: str, started: float, confirmations: int = 4, limit: float = 30) -> float:
    """ms from ``started`` until ``url`` answers 404 ``confirmations`` times in a row on
    fresh connections (the first of them counts; 0 when the first look already was)."""
    first, streak = started, 0
    while streak < confirmations:
        status = httpx.get(url, timeout=10).status_code
        now = time.perf_counter()
        if status == 404:
            if streak == 0:
                first = now
            streak += 1
        else:
            streak = 0
            if now - started > limit:
                raise RuntimeError(f"{url} still served {limit} s after its delete")
    return max(0.0, (first - started) * 1000)


def _ids(stack: Stack, hashes: list[str]) -> dict[str, int]:
    import psycopg

    with psycopg.connect(stack.database_url) as conn:
        rows = conn.execute(
            "SELECT media_hash, id FROM chat_messageattachment WHERE media_hash = ANY(%s)",
            (hashes,),
        ).fetchall()
    return dict(rows)


def stampede(stack: Stack, replicas: list[Proc], body: bytes, count: int = 200) -> int:
    """200 concurrent GETs of one cold object, spread evenly over the replicas: S3 GETs."""
    (obj,) = upload_many(f"http://127.0.0.1:{replicas[0].port}", stack.api_key, [body])
    recorder = S3Recorder(stack.s3_url)
    recorder.start()

    async def one(port: int) -> int:
        connection = await Connection.open("127.0.0.1", port)
        try:
            response = await connection.get(f"/media/{obj.media_hash}")
        finally:
            await connection.close()
        if response.body != body:
            raise RuntimeError("stampede: wrong bytes")
        return response.status

    async def all_at_once() -> list[int]:
        return await asyncio.gather(*(one(replicas[i % len(replicas)].port) for i in range(count)))

    statuses = asyncio.run(all_at_once())
    recorded = recorder.stop()
    if any(s != 200 for s in statuses):
        raise RuntimeError(f"stampede: statuses {sorted(set(statuses))}")
    return sum(1 for r in recorded if r.get("method") == "GET" and BUCKET in r.get("url", ""))


def edge_gone(stack: Stack, balancer: Proc, edge_proc: Proc, bodies: list[bytes]) -> list[float]:
    """Per object: cached at the edge, deleted through the balancer; ms from the DELETE's
    204 until the edge answers 404 (the purge is sent from a thread after the 204)."""
    base = f"http://127.0.0.1:{balancer.port}"
    objects = upload_many(base, stack.api_key, bodies)
    ids = _ids(stack, [o.media_hash for o in objects])
    headers = {"Authorization": f"Bearer {stack.api_key}"}
    edge = f"http://127.0.0.1:{edge_proc.port}"
    elapsed = []
    for obj in objects:
        path = f"/media/{obj.media_hash}"
        httpx.get(edge + path, timeout=10)
        if httpx.get(edge + path, timeout=10).headers.get("x-edge") != "HIT":
            raise RuntimeError(f"{path}: not cached at the edge")
        response = httpx.delete(
            f"{base}/api/attachments/{ids[obj.media_hash]}", headers=headers, timeout=30
        )
        answered = time.perf_counter()
        if response.status_code != 204:
            raise RuntimeError(f"delete {path}: {response.status_code}")
        elapsed.append(_until_gone(edge + path, answered, confirmations=2))
    return elapsed


# --- failover: the Redis master killed under load ---------------------------------------


@dataclass
class Tally:
    """Answers checked against the uploaded bytes."""

    requests: int = 0
    errors: int = 0
    wrong_bytes: int = 0
    kinds: Counter[str] = field(default_factory=Counter)  # what the errors were

    def check(self, response: httpx.Response | httpx.HTTPError, body: bytes) -> None:
        self.requests += 1
        if isinstance(response, httpx.HTTPError):
            self.errors += 1
            self.kinds[type(response).__name__] += 1
        elif response.status_code != 200:
            self.errors += 1
            self.kinds[f"HTTP {response.status_code}"] += 1
        elif response.content != body:
            self.wrong_bytes += 1


class FailoverLoad:
    """GETs through the balancer from a thread, 6 at a time: hot objects (held by L1 and
    Redis) and, one in five, a cold one (never read: S3, through Redis's single-flight).
    The same method as tests/test_redis_failover.py's ``Load``."""

    def __init__(
        self, base: str, hot: list[tuple[str, bytes]], cold: list[tuple[str, bytes]]
    ) -> None:
        self.base = base
        self.hot = hot
        self.cold = list(cold)
        self.tally = Tally()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    async def _run(self) -> None:
        rng = random.Random(7)
        async with httpx.AsyncClient(base_url=self.base, timeout=30) as client:

            async def worker() -> None:
                while not self._stop.is_set():
                    if self.cold and rng.random() < 0.2:
                        path, body = self.cold.pop()
                    else:
                        path, body = rng.choice(self.hot)
                    try:
                        response: httpx.Response | httpx.HTTPError = await client.get(path)
                    except httpx.HTTPError as exc:
                        response = exc
                    self.tally.check(response, body)
                    await asyncio.sleep(0.01)

            await asyncio.gather(*(worker() for _ in range(6)))

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=60)


def _get(url: str) -> httpx.Response | httpx.HTTPError:
    try:
        return httpx.get(url, timeout=30)
    except httpx.HTTPError as exc:
        return exc


def _probe(a: Proc, b: Proc, probes: list[tuple[str, bytes]], tally: Tally) -> bool:
    """A never-read object through replica A, then (its background fill given time) once
    through replica B: a HIT there comes from Redis, written by A and read by B."""
    path, body = probes.pop()
    tally.check(_get(f"http://127.0.0.1:{a.port}{path}"), body)
    time.sleep(0.2)
    answer = _get(f"http://127.0.0.1:{b.port}{path}")
    tally.check(answer, body)
    return isinstance(answer, httpx.Response) and answer.headers.get("x-cache") == "HIT"


def _kill_master(topology: RedisSide) -> Node:
    """SIGKILL a master: Sentinel's current one (its replica gets promoted); the first of
    the cluster's three (its slots are gone until it is back); the standalone server."""
    if isinstance(topology, Sentinel):
        node, _ = topology.kill_master()
        return node
    node = topology.masters()[0]
    node.kill()
    return node


def _restarts(topology: RedisSide) -> bool:
    """Whether the killed node must come back: no replica takes over its data."""
    return not isinstance(topology, Sentinel | ClusterWithReplicas)


def _channel_logs(replicas: list[Proc]) -> int:
    return sum(
        r.log.read_text(errors="replace").count(CHANNEL_LOG) for r in replicas if r.log.exists()
    )


def _s3_gets(recorded: list[dict[str, object]]) -> Counter[str]:
    """S3 object GETs per object (moto's recorder; its own API left out)."""
    return Counter(
        str(r["url"]).split("?")[0]
        for r in recorded
        if r.get("method") == "GET"
        and BUCKET in str(r.get("url", ""))
        and "/moto-api/" not in str(r["url"])
    )


def _restart(topology: RedisSide, node: Node) -> None:
    """The killed node started again on its port (standalone: empty; a cluster node keeps
    its identity and slots in nodes.conf and is waited for until the cluster says ok)."""
    if isinstance(topology, Cluster):
        topology.restart(node)
    else:
        node.start()


def measure_failover(
    stack: Stack,
    topology: RedisSide,
    replicas: list[Proc],
    balancer: Proc,
    hot: list[tuple[str, bytes]],
    probe_count: int,
) -> Failover:
    """Load through the balancer; 2 s in, a Redis master is SIGKILLed (standalone and
    cluster: started again 5 s later). Recovery: from the kill until the first of five
    probes in a row that are Redis HITs, after at least one that was not."""
    base = f"http://127.0.0.1:{balancer.port}"
    size = 8 * 1024
    cold_bodies = [body_for(9600, i, size) for i in range(40)]
    probe_bodies = [body_for(9700, i, size) for i in range(probe_count)]
    everything = cold_bodies + probe_bodies
    uploaded = upload_many(base, stack.api_key, everything)
    pairs = [(f"/media/{o.media_hash}", b) for o, b in zip(uploaded, everything, strict=True)]
    cold, probes = pairs[: len(cold_bodies)], pairs[len(cold_bodies) :]
    probes.reverse()  # popped from the end: in upload order
    a, b = replicas
    probe_tally = Tally()
    if not _probe(a, b, probes, probe_tally):
        say("failover: no Redis hit on the probe before the fault")
    result = Failover()
    load = FailoverLoad(base, hot, cold)
    recorder = S3Recorder(stack.s3_url)
    load.start()
    try:
        time.sleep(2.0)
        logs_before = _channel_logs(replicas)
        recorder.start()
        killed = _kill_master(topology)
        killed_at = time.monotonic()
        restart = _restarts(topology)
        while result.recovery_s is None:
            since = time.monotonic() - killed_at
            if since > FAILOVER_DEADLINE or not probes:
                break
            if restart and result.restarted_s is None and since > RESTART_AFTER:
                _restart(topology, killed)
                result.restarted_s = time.monotonic() - killed_at
            at = time.monotonic() - killed_at
            result.timeline.append((at, _probe(a, b, probes, probe_tally)))
            recent = [hit for _, hit in result.timeline[-RECOVERED_AFTER:]]
            missed = any(not hit for _, hit in result.timeline)
            if missed and len(recent) == RECOVERED_AFTER and all(recent):
                result.recovery_s = result.timeline[-RECOVERED_AFTER][0]
            else:
                time.sleep(0.1)
        if restart and result.restarted_s is None:  # out of probes early: back all the same
            _restart(topology, killed)
            result.restarted_s = time.monotonic() - killed_at
        time.sleep(2.0)  # and a little after
    finally:
        load.stop()
    per_object = _s3_gets(recorder.stop())
    result.s3_gets = sum(per_object.values())
    result.s3_objects = len(per_object)
    result.s3_max_per_object = max(per_object.values(), default=0)
    result.channel_logs = _channel_logs(replicas) - logs_before
    result.requests = load.tally.requests + probe_tally.requests
    result.errors = load.tally.errors + probe_tally.errors
    result.wrong_bytes = load.tally.wrong_bytes + probe_tally.wrong_bytes
    result.kinds = {
        **{f"load {k}": n for k, n in load.tally.kinds.items()},
        **{f"probe {k}": n for k, n in probe_tally.kinds.items()},
    }
    return result


# --- one topology ------------------------------------------------------------------------


def measure_topology(
    args: argparse.Namespace,
    procs: Processes,
    stack: Stack,
    name: str,
    edge: EdgeLine | None,
    started: list[RedisSide],
) -> Row:
    """Every check of one row; with ``edge``, also the edge line (on the first topology).
    The topology's Redis goes into ``started`` before it starts (``main`` stops it)."""
    row = Row(name)
    stack.redis_url = ""
    topology = TOPOLOGIES[name]()
    started.append(topology)
    say(f"[{name}] starting Redis ({type(topology).__name__}, tests/redis_topologies.py)")
    topology.start()
    redis_env = topology.environment()
    edge_ports = {name: free_port() for name in EDGES}
    edge_env = {
        "MEDIA_EDGE_PURGE": args.purged_edge,
        "MEDIA_EDGE_PURGE_URLS": f"http://127.0.0.1:{edge_ports[args.purged_edge]}/",
    }
    env = {**redis_env, **edge_env}
    say(f"[{name}] starting 2 replicas x 2 workers (scripts/serve.sh)")
    replicas = [start_replica(procs, stack, f"{name}-replica{i}", **env) for i in (1, 2)]
    balancer = start_balancer(procs, replicas)
    if args.edge_only:
        if edge is not None:
            measure_edge(args, procs, stack, balancer, replicas, edge_ports, edge)
        for proc in (balancer, *replicas):
            procs.stop(proc)
        topology.stop()
        started.remove(topology)
        return row
    base = f"http://127.0.0.1:{balancer.port}"
    bodies = [body_for(9000, i, BODY_BYTES) for i in range(64)]
    objects = upload_many(base, stack.api_key, bodies)
    paths = [f"/media/{o.media_hash}" for o in objects]
    warm(base, paths)
    script = wrk_script(procs, paths)
    hit = wrk(base + paths[0], args.seconds, script)
    row.hit_rps = hit.rps
    say(f"[{name}] hits through the balancer: {hit.rps:,.0f} req/s, p99 {hit.p99_ms:.2f} ms")
    one = f"http://127.0.0.1:{replicas[0].port}"
    warm(one, paths)
    row.direct_rps = wrk(one + paths[0], args.seconds, script).rps
    say(f"[{name}] hits on one replica, direct: {row.direct_rps:,.0f} req/s")

    a, b = replicas
    took, elapsed = delete_visible(
        stack, a, b, [body_for(9100, i, BODY_BYTES) for i in range(args.deletes)]
    )
    row.delete_ms = statistics.median(took)
    row.delete_p50_ms = statistics.median(elapsed)
    row.delete_p99_ms = percentile(elapsed, 99)
    say(
        f"[{name}] DELETE p50 {row.delete_ms:.1f} ms; then 404 on the other replica: "
        f"p50 {row.delete_p50_ms:.1f} ms, p99 {row.delete_p99_ms:.1f} ms"
    )

    row.stampede = [
        stampede(stack, replicas, body_for(9200, i, BODY_BYTES)) for i in range(args.stampedes)
    ]
    say(f"[{name}] stampede S3 GETs: {row.stampede}")

    if edge is not None:
        measure_edge(args, procs, stack, balancer, replicas, edge_ports, edge)

    say(f"[{name}] failover: a Redis master killed under load through the balancer")
    hot = list(zip(paths, bodies, strict=True))
    failover = measure_failover(stack, topology, replicas, balancer, hot, args.probes)
    row.failover = failover
    if failover.errors:  # what the replicas said about it, kept past the run
        kept = Path(tempfile.mkdtemp(prefix=f"mediacache-scale-failover-{name}-"))
        for replica in replicas:
            shutil.copy(replica.log, kept / f"{replica.name}.log")
        say(f"[{name}] failover errors: the replicas' logs are kept in {kept}")
    timeline = " ".join(f"{at:+.1f}{'H' if hit else 'm'}" for at, hit in failover.timeline)
    say(
        f"[{name}] failover: {failover.requests} requests, {failover.errors} errors, "
        f"{failover.wrong_bytes} wrong bodies {failover.kinds or ''}; Redis hits back after "
        f"{_seconds(failover.recovery_s)} s (killed node back at "
        f"{_seconds(failover.restarted_s)} s; probes: {timeline}); S3 GETs since the kill: "
        f"{failover.s3_gets} for {failover.s3_objects} objects, at most "
        f"{failover.s3_max_per_object} for one; {failover.channel_logs} invalidation-channel "
        "log lines"
    )

    for proc in (balancer, *replicas):
        procs.stop(proc)
    say(f"[{name}] restarting the replicas with MEDIA_L1_BYTES=0 for Redis hits")
    replicas = [
        start_replica(procs, stack, f"{name}-redis{i}", MEDIA_L1_BYTES="0", **env) for i in (1, 2)
    ]
    balancer = start_balancer(procs, replicas)
    base = f"http://127.0.0.1:{balancer.port}"
    warm(base, paths, times=1)
    row.redis_rps = wrk(base + paths[0], args.seconds, script).rps
    say(f"[{name}] Redis hits through the balancer: {row.redis_rps:,.0f} req/s")
    for proc in (balancer, *replicas):
        procs.stop(proc)
    topology.stop()
    started.remove(topology)
    return row


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def measure_edge(
    args: argparse.Namespace,
    procs: Processes,
    stack: Stack,
    balancer: Proc,
    replicas: list[Proc],
    edge_ports: dict[str, int],
    edge: EdgeLine,
) -> None:
    body = body_for(9300, 0, BODY_BYTES)
    (obj,) = upload_many(f"http://127.0.0.1:{balancer.port}", stack.api_key, [body])
    path = f"/media/{obj.media_hash}"
    targets = {"static": start_static(procs, body, obj.media_hash)}
    for name in EDGES:
        targets[name] = EDGE_STARTERS[name](procs, edge_ports[name], replicas)
        warm(f"http://127.0.0.1:{targets[name].port}", [path])
        answer = httpx.get(f"http://127.0.0.1:{targets[name].port}{path}")
        if answer.headers.get("x-edge") != "HIT":
            raise RuntimeError(f"the {name} edge does not keep the object")
    for round_ in range(args.rounds):
        for label, proc in targets.items():
            before = cpu_seconds(proc)
            result = wrk(f"http://127.0.0.1:{proc.port}{path}", args.seconds)
            cpu = edge.cpu_us.setdefault(label, [])
            cpu.append((cpu_seconds(proc) - before) / result.requests * 1e6)
            edge.results.setdefault(label, []).append(result)
            say(
                f"edge round {round_ + 1} {label}: {result.rps:,.0f} req/s, "
                f"{cpu[-1]:.1f} us CPU each"
            )
    edge.purged = args.purged_edge
    edge.gone_ms = edge_gone(
        stack,
        balancer,
        targets[args.purged_edge],
        [body_for(9400, i, BODY_BYTES) for i in range(args.deletes)],
    )
    say(
        f"deleted objects gone from the {edge.purged} edge: "
        f"p50 {statistics.median(edge.gone_ms):.0f} ms"
    )
    for proc in targets.values():
        procs.stop(proc)


# --- the table ---------------------------------------------------------------------------


def print_table(args: argparse.Namespace, rows: list[Row], edge: EdgeLine) -> None:
    if not args.edge_only:
        print_rows(args, rows)
    if edge.results:
        print_edge(args, edge)


def print_rows(args: argparse.Namespace, rows: list[Row]) -> None:
    print()
    print(
        "SCALE  2 replicas x 2 workers (scripts/serve.sh) behind nginx (deploy/nginx/balancer.conf:"
        " one hash, one replica),"
    )
    print(
        f"       PostgreSQL, moto S3; wrk -t2 -c16 -d{args.seconds}s over 64 objects of 50 KB; "
        f"{args.deletes} deletes; 200-GET stampedes"
    )
    header = (
        f"{'topology':<16} {'hit req/s':>10} {'1 replica':>10} {'Redis-hit req/s':>16} "
        f"{'DELETE ms':>10} {'delete-visible p50/p99 ms':>26} {'stampede S3 GETs':>17} "
        f"{'failover: requests / errors / wrong bytes / recovery s':>54} "
        f"{'S3 GETs / objects':>17}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        visible = f"{row.delete_p50_ms:.1f} / {row.delete_p99_ms:.1f}"
        gets = ", ".join(str(n) for n in row.stampede)
        f = row.failover
        failover = (
            "-"
            if f is None
            else f"{f.requests:,} / {f.errors} / {f.wrong_bytes} / {_seconds(f.recovery_s)}"
        )
        outage_gets = "-" if f is None else f"{f.s3_gets} / {f.s3_objects}"
        print(
            f"{row.topology:<16} {row.hit_rps:>10,.0f} {row.direct_rps:>10,.0f} "
            f"{row.redis_rps:>16,.0f} {row.delete_ms:>10.1f} {visible:>26} {gets:>17} "
            f"{failover:>54} {outage_gets:>17}"
        )
    print(
        "hit req/s: L1 hits through the balancer; 1 replica: the same, straight to one replica "
        "(2 workers);\nRedis-hit: through the balancer, replicas with MEDIA_L1_BYTES=0; "
        "DELETE ms: the API's DELETE on replica A (p50);\ndelete-visible: from its 204 until "
        "replica B answers 404 (0: at the first look);\nfailover: GETs through the balancer "
        "(6 at a time, 1 in 5 of a cold object) while a Redis master is SIGKILLed 2 s in "
        "(sentinel: the\nmaster, its replica promoted; cluster: 1 of 3 masters, started again "
        "5 s later; cluster-replicas: 1 of 3 masters,\nits replica promoted; standalone: the "
        "server, started again empty on its port 5 s later); "
        "errors: non-200 answers and transport errors; wrong bytes: 200s whose body differs;"
        "\nrecovery: from the kill until objects read through replica A are Redis HITs on "
        f"replica B (5 probes in a row; -: not within {FAILOVER_DEADLINE:.0f} s);\nS3 GETs / "
        "objects: S3 GETs from the kill to the end of the failover run, and how many objects "
        "they were for\n(the floor: one GET per object read)"
    )


EDGE_LABELS = {
    "static": "nginx static file from disk",
    "nginx": "nginx edge hit (deploy/edge/nginx-edge.conf)",
    "varnish": "Varnish hit (deploy/edge/mediacache.vcl)",
}


def print_edge(args: argparse.Namespace, edge: EdgeLine) -> None:
    best = {label: max(results, key=lambda r: r.rps) for label, results in edge.results.items()}
    yardstick = best["static"].rps
    print()
    print(
        f"EDGE  the same 50 KB file, wrk -t2 -c16 -d{args.seconds}s, "
        f"{args.rounds} alternating round(s), best shown"
    )
    edge_header = (
        f"{'target':<46} {'req/s':>9} {'p99 ms':>7} {'x nginx':>8} {'CPU us/hit':>11}  rounds"
    )
    print(edge_header)
    print("-" * len(edge_header))
    for label, results in edge.results.items():
        rounds = " / ".join(f"{r.rps:,.0f}" for r in results)
        print(
            f"{EDGE_LABELS[label]:<46} {best[label].rps:>9,.0f} {best[label].p99_ms:>7.2f} "
            f"{best[label].rps / yardstick:>8.1%} "
            f"{statistics.median(edge.cpu_us[label]):>11.1f}  {rounds}"
        )
    gone = edge.gone_ms
    print(
        f"delete visible at the {edge.purged} edge (from the DELETE's 204 until it answers 404), "
        f"{len(gone)} deletes: p50 {statistics.median(gone):.0f} ms, "
        f"p99 {percentile(gone, 99):.0f} ms, max {max(gone):.0f} ms"
    )
    print()
    static_cpu = statistics.median(edge.cpu_us["static"])
    for name in EDGES:
        ratio = best[name].rps / yardstick
        mark = "ok  " if ratio >= 0.9 else "MISS"
        cpu = statistics.median(edge.cpu_us[name]) / static_cpu
        print(
            f"TARGET  [{mark}] {name} edge hits >= 90% of nginx from disk: {ratio:.1%} "
            f"(CPU a hit: {cpu:.2f}x nginx's, the figure the neighbours' load moves least)"
        )
    mark = "ok  " if max(gone) <= 1000 else "MISS"
    print(
        f"TARGET  [{mark}] a deleted object 404 at the {edge.purged} edge within 1 s: "
        f"max {max(gone):.0f} ms"
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    names = [n for n in args.topologies.split(",") if n]
    unknown = [n for n in names if n not in TOPOLOGIES]
    if unknown:
        raise SystemExit(f"unknown topologies {unknown}; known: {', '.join(TOPOLOGIES)}")
    work = Path(tempfile.mkdtemp(prefix="mediacache-scale-"))
    procs = Processes(work)
    rows: list[Row] = []
    edge = EdgeLine()
    drop: Callable[[], None] | None = None
    topologies: list[RedisSide] = []  # redis-server processes outside ``procs``
    started = time.monotonic()
    try:
        with terminate_on_signals():
            database_url, drop = create_database(args.database)
            _, s3_url = start_s3(procs)
            stack = Stack(work, "", s3_url, database_url=database_url)
            stack.prepare_database()
            for i, name in enumerate(names):
                first_edge = edge if i == 0 else None
                rows.append(measure_topology(args, procs, stack, name, first_edge, topologies))
    except KeyboardInterrupt:
        say("interrupted: stopping everything")
        return 130
    finally:
        procs.close()
        for topology in topologies:
            topology.stop()  # each node: SIGTERM, SIGKILL after 10 s
        if drop is not None:
            try:
                drop()
            except Exception as exc:  # the table matters more than a leftover database
                say(f"could not drop the run's database: {exc!r}")
        shutil.rmtree(work, ignore_errors=True)
    print_table(args, rows, edge)
    say(f"done in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
