"""Which Redis topology the settings name, and the clients built for it (no server)."""

from __future__ import annotations

import pytest
import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.cluster
from redis.crc import key_slot

from config.env import SettingsEnv
from mediacache.checks import check_settings
from mediacache.core.settings import MediaSettings
from mediacache.tiers import codec
from mediacache.tiers.redis import lock_key
from mediacache.tiers.topology import RedisTopology, TopologyError


def topology(**values: object) -> RedisTopology | None:
    return RedisTopology.from_settings(MediaSettings(**{"REDIS_URL": "", **values}))  # type: ignore[arg-type]


def test_none_standalone_sentinel_cluster() -> None:
    assert topology() is None
    assert topology(REDIS_URL="redis://h:6379/2") == RedisTopology(
        "standalone", url="redis://h:6379/2"
    )
    sentinel = topology(
        REDIS_SENTINELS=["s1:26379", " s2:26380"], REDIS_SENTINEL_MASTER="mc",
        REDIS_PASSWORD="p", REDIS_SENTINEL_PASSWORD="sp", REDIS_DB=3,
    )  # fmt: skip
    assert sentinel is not None
    assert sentinel.kind == "sentinel"
    assert sentinel.nodes == (("s1", 26379), ("s2", 26380))
    assert (sentinel.master, sentinel.password, sentinel.sentinel_password, sentinel.db) == (
        "mc", "p", "sp", 3,
    )  # fmt: skip
    cluster = topology(REDIS_CLUSTER_NODES=["[::1]:7000", "c2:7001"])
    assert cluster is not None
    assert cluster.nodes == (("::1", 7000), ("c2", 7001))
    assert "p" not in cluster.describe()


@pytest.mark.parametrize(
    ("values", "says"),
    [
        ({"REDIS_URL": "redis://h", "REDIS_CLUSTER_NODES": ["c:1"]}, "only one"),
        ({"REDIS_SENTINELS": ["s:1"]}, "REDIS_SENTINEL_MASTER"),
        ({"REDIS_CLUSTER_NODES": ["c:1"], "REDIS_DB": 1}, "database 0"),
        ({"REDIS_CLUSTER_NODES": ["c"]}, "host:port"),
    ],
)
def test_contradictions_are_errors(values: dict[str, object], says: str) -> None:
    with pytest.raises(TopologyError, match=says):
        topology(**values)


def test_the_system_check_names_them(settings) -> None:
    settings.MEDIACACHE = {**settings.MEDIACACHE, "REDIS_URL": "", "REDIS_SENTINELS": ["s:1"]}
    (error,) = check_settings()
    assert error.id == "mediacache.E005"
    assert "REDIS_SENTINEL_MASTER" in error.msg


def test_each_topology_gets_its_clients_without_connecting() -> None:
    expected = {
        "standalone": (redis.asyncio.Redis, redis.Redis),
        "sentinel": (redis.asyncio.Redis, redis.Redis),
        "cluster": (redis.asyncio.cluster.RedisCluster, redis.cluster.RedisCluster),
    }
    for found in (
        topology(REDIS_URL="redis://127.0.0.1:9/0"),
        topology(REDIS_SENTINELS=["127.0.0.1:9"], REDIS_SENTINEL_MASTER="mc"),
    ):
        assert found is not None
        async_class, sync_class = expected[found.kind]
        assert isinstance(found.async_client(timeout=0.1, connect_timeout=0.1), async_class)
        assert isinstance(found.sync_client(timeout=0.1, connect_timeout=0.1), sync_class)


def test_the_environment_reads_the_topology_under_its_own_names(monkeypatch) -> None:
    monkeypatch.setenv("REDIS_SENTINELS", "a:1, b:2")
    monkeypatch.setenv("REDIS_SENTINEL_MASTER", "mc")
    values = SettingsEnv().media_settings(
        MediaSettings, fixed={"REDIS_URL": ""}, names={
            n: n for n in ("REDIS_SENTINELS", "REDIS_SENTINEL_MASTER")
        }, defaults={},
    )  # fmt: skip
    assert values["REDIS_SENTINELS"] == ["a:1", "b:2"]
    assert values["REDIS_SENTINEL_MASTER"] == "mc"


def test_every_key_of_an_object_is_in_one_slot() -> None:
    for media_hash in ("1BLJqu0edqfv1F7Qk8Mw3w", "1BLJqu0edqfv1F7Qk8Mw3w/original"):
        keys = (codec.redis_key(media_hash), codec.tail_key(media_hash), lock_key(media_hash))
        assert len({key_slot(k.encode()) for k in keys}) == 1
    assert codec.redis_key("X") == "media:{X}"
    assert codec.legacy_keys("X") == ("media:X", "media:X:t")


TLS_FILES = {
    "REDIS_TLS_CA_FILE": "/etc/mc/ca.pem",
    "REDIS_TLS_CERT_FILE": "/etc/mc/client.pem",
    "REDIS_TLS_KEY_FILE": "/etc/mc/client.key",
}


def test_tls_reaches_the_sentinels_and_the_data_nodes() -> None:
    found = topology(
        REDIS_SENTINELS=["127.0.0.1:9"], REDIS_SENTINEL_MASTER="mc", REDIS_TLS=True, **TLS_FILES
    )
    assert found is not None
    for client in (
        found.async_client(timeout=0.1, connect_timeout=0.1),
        found.sync_client(timeout=0.1, connect_timeout=0.1),
    ):
        pool = client.connection_pool
        assert "SSL" in pool.connection_class.__name__
        assert pool.connection_kwargs["ssl_ca_certs"] == "/etc/mc/ca.pem"
        assert pool.connection_kwargs["ssl_keyfile"] == "/etc/mc/client.key"
        sentinel = pool.sentinel_manager.sentinels[0]  # type: ignore[union-attr]
        assert "SSL" in sentinel.connection_pool.connection_class.__name__


def test_tls_settings_that_cannot_work_are_errors() -> None:
    with pytest.raises(TopologyError, match="rediss://"):
        topology(REDIS_URL="redis://h:6379/0", REDIS_TLS=True)
    with pytest.raises(TopologyError, match="REDIS_TLS_KEY_FILE"):
        topology(REDIS_CLUSTER_NODES=["c:1"], REDIS_TLS=True, REDIS_TLS_CERT_FILE="/c.pem")
    secure = topology(REDIS_URL="rediss://h:6380/0", REDIS_TLS_CA_FILE="/etc/mc/ca.pem")
    assert secure is not None
    assert secure.tls
    client = secure.async_client(timeout=0.1, connect_timeout=0.1)
    assert client.connection_pool.connection_kwargs["ssl_ca_certs"] == "/etc/mc/ca.pem"
