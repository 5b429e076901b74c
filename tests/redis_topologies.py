"""Real Redis topologies on loopback for the tests: standalone, Sentinel, Cluster.

Each starts its own ``redis-server`` processes on free ports, in a temporary
directory, and stops them by pid (also when it failed half-way). Every wait is
bounded. The shared Redis (6379) is never touched.

- ``Sentinel``: a master, one replica, three sentinels (``redis-server s.conf
  --sentinel``: Debian has no ``redis-sentinel`` binary), down-after 1000 ms.
- ``Cluster``: three masters, no replicas (``redis-cli --cluster create``); each
  node's bus port (its port + 10000) is free too.
- ``ClusterWithReplicas``: three masters and one replica each (``--cluster-replicas
  1``), what the README recommends: a killed master's replica is promoted after the
  node timeout (2 s unless ``patience_ms``), no restart needed.

With ``tls`` (a ``TlsFiles``: a CA, and a certificate and key that serve both the
servers and the clients), every node listens on TLS only (``--port 0 --tls-port P``,
``tls-auth-clients yes``, the cluster bus and replication over TLS too) and the
settings carry ``REDIS_TLS`` and the files.

``settings()`` gives the engine's settings for the topology (``MediaSettings``
overrides), ``environment()`` the same as environment variables for a service
process, ``client()`` a blocking redis-py client on it.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
import redis.cluster

from tests.servers import free_port

START_TIMEOUT = 30.0


@dataclass(frozen=True)
class TlsFiles:
    ca: Path
    cert: Path
    key: Path

    def server_args(self) -> list[str]:
        return [
            "--tls-cert-file", str(self.cert), "--tls-key-file", str(self.key),
            "--tls-ca-cert-file", str(self.ca), "--tls-auth-clients", "yes",
            "--tls-replication", "yes", "--tls-cluster", "yes",
        ]  # fmt: skip

    def client_options(self) -> dict[str, Any]:
        return {
            "ssl": True,
            "ssl_ca_certs": str(self.ca),
            "ssl_certfile": str(self.cert),
            "ssl_keyfile": str(self.key),
        }

    def settings(self) -> dict[str, Any]:
        return {
            "REDIS_TLS": True,
            "REDIS_TLS_CA_FILE": str(self.ca),
            "REDIS_TLS_CERT_FILE": str(self.cert),
            "REDIS_TLS_KEY_FILE": str(self.key),
        }


def _binary() -> str:
    found = shutil.which("redis-server")
    if found is None:
        raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
    return found


def _wait(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except (redis.RedisError, OSError):
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not ready within {timeout:.0f} s")
        time.sleep(0.05)


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def cluster_port() -> int:
    """A free port whose cluster bus port (+10000) is free too."""
    for _ in range(200):
        port = free_port()
        if port + 10000 < 65536 and _port_free(port + 10000):
            return port
    raise RuntimeError("no free port pair for a cluster node")


class Node:
    """One redis-server process (data node or sentinel)."""

    def __init__(
        self,
        directory: Path,
        port: int,
        args: list[str],
        config: str = "",
        tls: TlsFiles | None = None,
    ) -> None:
        self.directory = directory
        self.port = port
        self.args = args
        self.config = config
        self.tls = tls
        self.process: subprocess.Popen[bytes] | None = None
        directory.mkdir(parents=True, exist_ok=True)

    def start(self) -> Node:
        argv = [_binary()]
        if self.config:
            conf = self.directory / "node.conf"
            if not conf.exists():  # a sentinel rewrites its file: keep what it learnt
                conf.write_text(self.config)
            argv.append(str(conf))
        if self.tls is None:
            argv += ["--port", str(self.port)]
        else:
            argv += ["--port", "0", "--tls-port", str(self.port), *self.tls.server_args()]
        argv += [
            "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", str(self.directory), *self.args,
        ]  # fmt: skip
        if "--sentinel" not in self.args:  # DEBUG SLEEP makes a node slow (slowed())
            argv += ["--enable-debug-command", "local"]
        log = open(self.directory / "log", "ab")  # noqa: SIM115  # the child keeps it
        self.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        _wait(self.client().ping, 10, f"redis-server on {self.port}")
        return self

    def client(self, **kwargs: Any) -> redis.Redis:
        tls = {} if self.tls is None else self.tls.client_options()
        options = {"socket_timeout": 2, "socket_connect_timeout": 1, **tls, **kwargs}
        return redis.Redis(host="127.0.0.1", port=self.port, **options)

    def kill(self) -> None:
        """SIGKILL: as a crashed or lost node."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process = None

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


class Topology:
    kind = ""

    def __init__(self, *, patience_ms: int = 0, tls: TlsFiles | None = None) -> None:
        """``patience_ms``: how long a silent master may stay silent before it is taken
        for dead (Sentinel's down-after, the cluster's node timeout); 0: the default.
        ``tls``: every node on TLS only (``Sentinel``, ``Cluster``, ``ClusterWithReplicas``)."""
        self.patience_ms = patience_ms
        self.tls = tls
        self.root = Path(tempfile.mkdtemp(prefix=f"mediacache-{self.kind}-"))
        self.nodes: list[Node] = []

    def start(self) -> Topology:
        raise NotImplementedError

    def settings(self) -> dict[str, Any]:
        raise NotImplementedError

    def environment(self) -> dict[str, str]:
        return {
            name: ",".join(value) if isinstance(value, list | tuple) else str(value)
            for name, value in self.settings().items()
        }

    def client(self) -> redis.Redis | redis.cluster.RedisCluster:
        raise NotImplementedError

    def masters(self) -> list[Node]:
        """The data nodes that take writes now."""
        raise NotImplementedError

    def flush(self) -> None:
        client = self.client()
        try:
            client.flushall()
        finally:
            client.close()

    def stop(self) -> None:
        for node in reversed(self.nodes):
            with contextlib.suppress(Exception):
                node.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Topology:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Standalone(Topology):
    kind = "standalone"

    def start(self) -> Standalone:
        self.node = Node(self.root / "redis", free_port(), [])
        self.nodes.append(self.node)
        self.node.start()
        return self

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.node.port}/0"

    def settings(self) -> dict[str, Any]:
        return {"REDIS_URL": self.url}

    def client(self) -> redis.Redis:
        return self.node.client()

    def masters(self) -> list[Node]:
        return [self.node]


class Sentinel(Topology):
    kind = "sentinel"
    name = "mcmaster"

    def start(self) -> Sentinel:
        self.master = Node(self.root / "master", free_port(), [], tls=self.tls)
        self.replica = Node(self.root / "replica", free_port(), [], tls=self.tls)
        self.replica.args = ["--replicaof", "127.0.0.1", str(self.master.port)]
        self.nodes += [self.master, self.replica]
        self.master.start()
        self.replica.start()
        self.sentinels = []
        for i in range(3):
            config = (
                f"sentinel monitor {self.name} 127.0.0.1 {self.master.port} 2\n"
                f"sentinel down-after-milliseconds {self.name} {self.patience_ms or 1000}\n"
                f"sentinel failover-timeout {self.name} 5000\n"
                f"sentinel parallel-syncs {self.name} 1\n"
            )
            node = Node(
                self.root / f"sentinel{i}", free_port(), ["--sentinel"], config, tls=self.tls
            )
            self.sentinels.append(node)
            self.nodes.append(node)
            node.start()
        _wait(self._settled, START_TIMEOUT, "sentinel trio")
        return self

    def _settled(self) -> bool:
        """Every sentinel knows the master, its replica and the two other sentinels
        (else a failover could not reach its quorum)."""
        link = self.master.client().info("replication")
        if link.get("connected_slaves", 0) < 1:
            return False
        for node in self.sentinels:
            client = node.client()
            try:
                state = client.sentinel_master(self.name)
                if int(state["num-other-sentinels"]) < 2 or int(state["num-slaves"]) < 1:
                    return False
            finally:
                client.close()
        return True

    def settings(self) -> dict[str, Any]:
        return {
            "REDIS_SENTINELS": [f"127.0.0.1:{n.port}" for n in self.sentinels],
            "REDIS_SENTINEL_MASTER": self.name,
            **({} if self.tls is None else self.tls.settings()),
        }

    def master_port(self) -> int:
        client = self.sentinels[0].client()
        try:
            return int(client.sentinel_get_master_addr_by_name(self.name)[1])
        finally:
            client.close()

    def data_node(self, port: int) -> Node:
        return next(n for n in (self.master, self.replica) if n.port == port)

    def client(self) -> redis.Redis:
        return self.data_node(self.master_port()).client()

    def masters(self) -> list[Node]:
        return [self.data_node(self.master_port())]

    def kill_master(self) -> tuple[Node, float]:
        """SIGKILL the current master; (that node, when)."""
        node = self.data_node(self.master_port())
        node.kill()
        return node, time.monotonic()

    def wait_for_new_master(self, old_port: int, timeout: float = 60) -> float:
        """Until the sentinels name another master that accepts writes; when."""

        def promoted() -> bool:
            port = self.master_port()
            if port == old_port:
                return False
            client = self.data_node(port).client()
            try:
                return client.info("replication")["role"] == "master"
            finally:
                client.close()

        _wait(promoted, timeout, "failover")
        return time.monotonic()


class Cluster(Topology):
    kind = "cluster"
    replicas_per_master = 0

    def start(self) -> Cluster:
        for i in range(3 * (1 + self.replicas_per_master)):
            node = Node(
                self.root / f"node{i}", cluster_port(),
                ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                 "--cluster-node-timeout", str(self.patience_ms or 2000)],
                tls=self.tls,
            )  # fmt: skip
            self.nodes.append(node)
            node.start()
        create = [
            "redis-cli", "--cluster", "create",
            *(f"127.0.0.1:{n.port}" for n in self.nodes),
            "--cluster-replicas", str(self.replicas_per_master), "--cluster-yes",
        ]  # fmt: skip
        if self.tls is not None:
            create += ["--tls", "--cacert", str(self.tls.ca), "--cert", str(self.tls.cert),
                       "--key", str(self.tls.key)]  # fmt: skip
        subprocess.run(create, check=True, capture_output=True, timeout=START_TIMEOUT)
        _wait(lambda: self._ok() and self._replicas_linked(), START_TIMEOUT, "cluster")
        return self

    def _role(self, node: Node) -> str:
        client = node.client()
        try:
            return str(client.info("replication")["role"])
        finally:
            client.close()

    def _replicas_linked(self) -> bool:
        """Every replica has done its first sync (else it could not be promoted)."""
        for node in self.nodes:
            if not node.alive:
                continue
            client = node.client()
            try:
                info = client.info("replication")
                if info["role"] != "master" and info.get("master_link_status") != "up":
                    return False
            finally:
                client.close()
        return True

    def _ok(self) -> bool:
        for node in self.nodes:
            if not node.alive:
                continue
            client = node.client()
            try:
                if client.cluster("info")["cluster_state"] != "ok":
                    return False
            finally:
                client.close()
        return True

    def settings(self) -> dict[str, Any]:
        tls = {} if self.tls is None else self.tls.settings()
        return {"REDIS_CLUSTER_NODES": [f"127.0.0.1:{n.port}" for n in self.nodes], **tls}

    def client(self) -> redis.cluster.RedisCluster:
        alive = [n for n in self.nodes if n.alive]
        tls = {} if self.tls is None else self.tls.client_options()
        return redis.cluster.RedisCluster(
            startup_nodes=[redis.cluster.ClusterNode("127.0.0.1", n.port) for n in alive],
            socket_timeout=2,
            **tls,
        )

    def masters(self) -> list[Node]:
        """The live nodes that are masters now (a promoted replica among them)."""
        return [n for n in self.nodes if n.alive and self._role(n) == "master"]

    def replicas(self) -> list[Node]:
        return [n for n in self.nodes if n.alive and self._role(n) != "master"]

    def node_of(self, key: str) -> Node:
        """The master that holds ``key``'s slot."""
        client = self.client()
        try:
            port = client.get_node_from_key(key).port
        finally:
            client.close()
        return next(n for n in self.nodes if n.port == port)

    def wait_ok(self, timeout: float = START_TIMEOUT) -> None:
        _wait(self._ok, timeout, "cluster")

    def restart(self, node: Node) -> None:
        """Start a killed node again on its port and directory (its nodes.conf keeps its
        identity and slots); wait until the cluster says ok."""
        node.start()
        _wait(self._ok, START_TIMEOUT, "cluster after restart")


class ClusterWithReplicas(Cluster):
    kind = "cluster-replicas"
    replicas_per_master = 1

    def wait_promoted(self, killed: Node, timeout: float = 60) -> float:
        """Until a live master serves the slots ``killed`` had and the cluster says ok
        again (its replica was promoted); when."""

        def promoted() -> bool:
            return not killed.alive and len(self.masters()) == 3 and self._ok()

        _wait(promoted, timeout, "replica promotion")
        return time.monotonic()


@contextlib.contextmanager
def slowed(nodes: list[Node], delay: float = 0.5) -> Iterator[None]:
    """Each node answers ``delay`` seconds late: ``DEBUG SLEEP`` back to back, from a
    thread per node, so every command waits up to ``delay`` (below Sentinel's 1 s
    down-after and the cluster's 2 s node timeout: slow, not down)."""
    stop = threading.Event()

    def sleeper(node: Node) -> None:
        client = node.client(socket_timeout=delay + 5)
        try:
            while not stop.is_set():
                client.execute_command("DEBUG", "SLEEP", delay)
                time.sleep(0.005)
        finally:
            client.close()

    threads = [threading.Thread(target=sleeper, args=(n,), daemon=True) for n in nodes]
    for thread in threads:
        thread.start()
    try:
        yield
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=delay + 10)


TOPOLOGIES: dict[str, type[Topology]] = {
    "standalone": Standalone,
    "sentinel": Sentinel,
    "cluster": Cluster,
    "cluster-replicas": ClusterWithReplicas,
}


@contextlib.contextmanager
def running(kind: str, *, patience_ms: int = 0, tls: TlsFiles | None = None) -> Iterator[Topology]:
    with TOPOLOGIES[kind](patience_ms=patience_ms, tls=tls) as topology:
        yield topology
