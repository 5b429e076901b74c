"""Which Redis the tiers talk to, and the one place their clients are built.

Three topologies, chosen by the settings: a standalone server (``REDIS_URL``), a
master watched by Sentinel (``REDIS_SENTINELS`` + ``REDIS_SENTINEL_MASTER``: the
client asks the sentinels where the master is at each new connection, so it follows
a failover), and Redis Cluster (``REDIS_CLUSTER_NODES``: the client learns the slot
map from any node and follows MOVED; with a replica per master, the replica is
promoted when its master dies, and reads never go to replicas). Everything above
this module uses the same commands on all three: the keys of one object share a hash
tag (``codec``), so every multi-key command, pipeline and script touches one slot.

TLS: a standalone server by its ``rediss://`` URL; Sentinel and Cluster with
``REDIS_TLS`` (every connection: the sentinels, the data nodes, each cluster node the
slot map names). ``REDIS_TLS_CA_FILE`` verifies the servers (default: the system's
CAs), ``REDIS_TLS_CERT_FILE``/``REDIS_TLS_KEY_FILE`` is the client's certificate for
servers that ask for one (``tls-auth-clients yes``); with a ``rediss://`` URL they
apply too.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

import redis
import redis.asyncio as aioredis
import redis.asyncio.client
import redis.asyncio.cluster
import redis.asyncio.sentinel
import redis.cluster
import redis.sentinel
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry

from mediacache.core.settings import MediaSettings

# What a Redis client may raise when Redis fails, besides redis-py's own errors and
# OSError: redis-py 8.1's asyncio clients can raise AttributeError ("'NoneType' object
# has no attribute 'writelines'") or uvloop's RuntimeError ("unable to perform operation
# on <TCPTransport closed=True>") when they write on a connection the server closed, e.g.
# a cluster master killed mid-request (redis/redis-py#4287). A Redis failure like any
# other for the callers: served without Redis, never a 500.
CLIENT_FAULTS: tuple[type[Exception], ...] = (AttributeError, RuntimeError)

Kind = Literal["standalone", "sentinel", "cluster"]
AsyncClient = aioredis.Redis | redis.asyncio.cluster.RedisCluster
SyncClient = redis.Redis | redis.cluster.RedisCluster


class TopologyError(ValueError):
    """The Redis settings contradict each other or are incomplete."""


def _address(text: str) -> tuple[str, int]:
    host, sep, port = text.strip().rpartition(":")
    if not sep or not host or not port.isdigit():
        raise TopologyError(f"expected host:port, got {text!r}")
    return host.strip("[]"), int(port)


@dataclass(frozen=True, slots=True)
class RedisTopology:
    kind: Kind
    url: str = ""
    nodes: tuple[tuple[str, int], ...] = ()  # sentinels, or cluster seed nodes
    master: str = ""
    username: str = ""
    password: str = ""
    sentinel_username: str = ""
    sentinel_password: str = ""
    db: int = 0
    tls: bool = False
    tls_ca_file: str = ""
    tls_cert_file: str = ""
    tls_key_file: str = ""

    @classmethod
    def from_settings(cls, settings: MediaSettings) -> RedisTopology | None:
        """None: no Redis configured (the in-process tier is the only cache)."""
        chosen = [
            name
            for name, value in (
                ("REDIS_URL", settings.REDIS_URL),
                ("REDIS_SENTINELS", settings.REDIS_SENTINELS),
                ("REDIS_CLUSTER_NODES", settings.REDIS_CLUSTER_NODES),
            )
            if value
        ]
        if len(chosen) > 1:
            raise TopologyError(f"set only one of {', '.join(chosen)}")
        username, password = settings.REDIS_USERNAME, settings.REDIS_PASSWORD
        if bool(settings.REDIS_TLS_CERT_FILE) != bool(settings.REDIS_TLS_KEY_FILE):
            raise TopologyError("set both REDIS_TLS_CERT_FILE and REDIS_TLS_KEY_FILE, or neither")
        tls: dict[str, Any] = {
            "tls": settings.REDIS_TLS,
            "tls_ca_file": settings.REDIS_TLS_CA_FILE,
            "tls_cert_file": settings.REDIS_TLS_CERT_FILE,
            "tls_key_file": settings.REDIS_TLS_KEY_FILE,
        }
        if settings.REDIS_SENTINELS:
            if not settings.REDIS_SENTINEL_MASTER:
                raise TopologyError("REDIS_SENTINELS needs REDIS_SENTINEL_MASTER")
            return cls(
                "sentinel",
                nodes=tuple(_address(n) for n in settings.REDIS_SENTINELS),
                master=settings.REDIS_SENTINEL_MASTER,
                sentinel_username=settings.REDIS_SENTINEL_USERNAME,
                sentinel_password=settings.REDIS_SENTINEL_PASSWORD,
                db=settings.REDIS_DB,
                username=username,
                password=password,
                **tls,
            )
        if settings.REDIS_CLUSTER_NODES:
            if settings.REDIS_DB:
                raise TopologyError("Redis Cluster has only database 0 (REDIS_DB)")
            nodes = tuple(_address(n) for n in settings.REDIS_CLUSTER_NODES)
            return cls("cluster", nodes=nodes, username=username, password=password, **tls)
        if settings.REDIS_URL:
            secure = urlsplit(settings.REDIS_URL).scheme == "rediss"
            if settings.REDIS_TLS and not secure:
                raise TopologyError("REDIS_TLS with a standalone server: use a rediss:// URL")
            return cls("standalone", url=settings.REDIS_URL, **{**tls, "tls": secure})
        return None

    def describe(self) -> str:
        """For logs and pages: where, never a password."""
        if self.kind == "standalone":
            host = urlsplit(self.url).hostname or self.url.partition("://")[0]
            return f"standalone {host}"
        where = ",".join(f"{h}:{p}" for h, p in self.nodes)
        return f"sentinel {self.master}@{where}" if self.kind == "sentinel" else f"cluster {where}"

    def _auth(self) -> dict[str, Any]:
        return {"username": self.username or None, "password": self.password or None}

    def _tls(self) -> dict[str, Any]:
        """redis-py's TLS options for every connection (none without TLS: a plain
        connection class refuses them). A standalone URL's scheme already says TLS."""
        if not self.tls:
            return {}
        options: dict[str, Any] = {} if self.kind == "standalone" else {"ssl": True}
        if self.tls_ca_file:
            options["ssl_ca_certs"] = self.tls_ca_file
        if self.tls_cert_file:
            options["ssl_certfile"] = self.tls_cert_file
            options["ssl_keyfile"] = self.tls_key_file
        return options

    def _sentinel_kwargs(self, timeout: float) -> dict[str, Any]:
        return {
            "socket_timeout": timeout,
            "socket_connect_timeout": timeout,
            "username": self.sentinel_username or None,
            "password": self.sentinel_password or None,
            **self._tls(),
        }

    # -- clients --------------------------------------------------------------------------

    def async_client(
        self, *, timeout: float | None, connect_timeout: float, **extra: Any
    ) -> AsyncClient:
        """An asyncio client; redis-py's own retries off (the tier bounds each call)."""
        options: dict[str, Any] = {
            "socket_timeout": timeout,
            "socket_connect_timeout": connect_timeout,
            "retry": AsyncRetry(NoBackoff(), 0),
            **self._tls(),
            **extra,
        }
        if self.kind == "standalone":
            return aioredis.Redis.from_url(self.url, **options)
        if self.kind == "sentinel":
            sentinel = redis.asyncio.sentinel.Sentinel(  # type: ignore[no-untyped-call]
                list(self.nodes), sentinel_kwargs=self._sentinel_kwargs(connect_timeout)
            )
            client: aioredis.Redis = sentinel.master_for(
                self.master, db=self.db, **self._auth(), **options
            )
            return client
        startup = [redis.asyncio.cluster.ClusterNode(h, p) for h, p in self.nodes]
        return redis.asyncio.cluster.RedisCluster(
            startup_nodes=startup, **self._auth(), **_cluster_options(options)
        )

    def sync_client(self, *, timeout: float | None, connect_timeout: float) -> SyncClient:
        """A blocking client (the write side, the stats, the health check)."""
        options: dict[str, Any] = {
            "socket_timeout": timeout,
            "socket_connect_timeout": connect_timeout,
            "retry": Retry(NoBackoff(), 0),
            **self._tls(),
        }
        if self.kind == "standalone":
            return redis.Redis.from_url(self.url, **options)
        if self.kind == "sentinel":
            sentinel = redis.sentinel.Sentinel(  # type: ignore[no-untyped-call]
                list(self.nodes), sentinel_kwargs=self._sentinel_kwargs(connect_timeout)
            )
            client: redis.Redis = sentinel.master_for(  # type: ignore[no-untyped-call]
                self.master, db=self.db, **self._auth(), **options
            )
            return client
        startup = [
            redis.cluster.ClusterNode(h, p)  # type: ignore[no-untyped-call]
            for h, p in self.nodes
        ]
        return redis.cluster.RedisCluster(
            startup_nodes=startup, **self._auth(), **_cluster_options(options)
        )


def _cluster_options(options: dict[str, Any]) -> dict[str, Any]:
    """One retry in the cluster: it is what lets the client refresh its slot map after
    a node died or a slot moved, instead of failing every call until the next refresh.

    Reads go to masters only (``load_balancing_strategy`` None, redis-py's default, said
    here so nobody turns it on): a replica can lag a purge, and a read of the object from
    it after its tombstone was written on the master would put a deleted object back in
    an L1. After a failover the promoted replica is a master like any other: redis-py
    8.1 refreshes its slot map on the connection error to the dead master (the retry
    above) or patches it on the MOVED the promoted node answers.
    """
    options = dict(options)
    options["load_balancing_strategy"] = None
    backoff = NoBackoff()
    options["retry"] = (
        AsyncRetry(backoff, 1) if isinstance(options["retry"], AsyncRetry) else Retry(backoff, 1)
    )
    return options


async def async_pubsub(client: AsyncClient) -> redis.asyncio.client.PubSub:
    """A classic pub/sub on ``client``'s topology. In a cluster a classic PUBLISH
    reaches every node over the cluster bus, so any node will do: a random one, so
    a resubscription after a node died lands elsewhere."""
    if isinstance(client, redis.asyncio.cluster.RedisCluster):
        await client.initialize()
        node = random.choice(client.get_nodes())  # noqa: S311  # spreading, not secrecy
        return client.pubsub(node=node)
    return client.pubsub()


def memory_info(client: SyncClient) -> dict[str, int]:
    """``used_memory``, ``maxmemory`` and how many masters were asked: in a cluster, the
    sums over its masters (one node's INFO would be a third of the truth)."""
    if isinstance(client, redis.cluster.RedisCluster):
        per_node = client.info("memory", target_nodes=redis.cluster.RedisCluster.PRIMARIES)
        infos = list(per_node.values())
    else:
        infos = [client.info("memory")]
    return {
        "used_memory": sum(int(i["used_memory"]) for i in infos),
        "maxmemory": sum(int(i.get("maxmemory", 0)) for i in infos),
        "masters": len(infos),
    }


def used_memory(client: SyncClient) -> int:
    return memory_info(client)["used_memory"]
