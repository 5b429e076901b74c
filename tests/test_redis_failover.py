"""Redis losing its master under load: two ``serve.sh`` replicas (2 workers each, the
production defaults) keep answering 200 with the right bytes, and Redis hits come back.

- Sentinel: the master is SIGKILLed; the sentinels promote the replica (down-after
  1 s) and the replicas' clients find it.
- Cluster (3 masters, no replicas): one master is SIGKILLed, so its slots are gone
  and the cluster refuses every command; it is started again 5 s later.
- Cluster with replicas (3 masters, one replica each): one master is SIGKILLed and
  stays dead; after the node timeout (2 s) its replica is promoted, and the clients
  find it (redis-py refreshes its slot map on the connection error, or follows the
  MOVED the promoted node answers).

Meanwhile requests are served from L1 or from S3 (Redis fails open). *Recovery* is
the time from the kill until objects read by one replica are Redis HITs on the
other, which has never seen them (the Redis write and read paths both work again):
the first of five such probes in a row, after at least one missed.
"""

from __future__ import annotations

import asyncio
import os
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.redis_topologies import Cluster, ClusterWithReplicas, Sentinel, Topology, running
from tests.service_process import PROXIED
from tests.test_replicas import Replicas, two_replicas

DEADLINE = 30.0  # seconds a recovery may take before the test gives up
RECOVERED_AFTER = 5  # probes in a row that hit


@dataclass
class Tally:
    statuses: Counter = field(default_factory=Counter)
    wrong_bytes: int = 0
    errors: list[str] = field(default_factory=list)

    def check(self, response: httpx.Response, body: bytes) -> None:
        self.statuses[response.status_code] += 1
        if response.status_code == 200 and response.content != body:
            self.wrong_bytes += 1


async def _upload_all(replicas: Replicas, bodies: list[bytes]) -> list[str]:
    headers = {**PROXIED, "Authorization": f"Bearer {replicas.api_key}"}
    limit = asyncio.Semaphore(6)

    async def one(client: httpx.AsyncClient, body: bytes) -> str:
        async with limit:
            response = await client.post(
                f"{replicas.services[0].url}/api/attachments/",
                files={"file": ("b.bin", body)}, headers=headers,
            )  # fmt: skip
        assert response.status_code == 201, response.text
        return str(response.json()["media_hash"])

    async with httpx.AsyncClient(timeout=60) as client:
        return list(await asyncio.gather(*(one(client, b) for b in bodies)))


class Load:
    """GETs of hot (cached) and cold objects over both replicas from a thread, every
    answer checked against the uploaded bytes."""

    def __init__(self, replicas: Replicas, hot: dict[str, bytes], cold: dict[str, bytes]):
        self.replicas = replicas
        self.hot = list(hot.items())
        self.cold = list(cold.items())
        self.tally = Tally()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    async def _run(self) -> None:
        rng = random.Random(7)
        urls = [s.url for s in self.replicas.services]
        async with httpx.AsyncClient(timeout=30) as client:

            async def worker() -> None:
                while not self._stop.is_set():
                    if self.cold and rng.random() < 0.2:
                        media_hash, body = self.cold.pop()
                    else:
                        media_hash, body = rng.choice(self.hot)
                    try:
                        response = await client.get(f"{rng.choice(urls)}/media/{media_hash}")
                    except httpx.HTTPError as exc:
                        self.tally.errors.append(repr(exc))
                        continue
                    self.tally.check(response, body)
                    await asyncio.sleep(0.01)

            await asyncio.gather(*(worker() for _ in range(6)))

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)


def _probe(replicas: Replicas, probes: list[tuple[str, bytes]], tally: Tally) -> bool:
    """One probe: read a never-requested object through the first replica, then, once
    its background fill had time, once through the second: a HIT there comes from Redis
    (only one request: a second one could hit the L1 the first filled)."""
    media_hash, body = probes.pop()
    first, second = (s.url for s in replicas.services)
    tally.check(httpx.get(f"{first}/media/{media_hash}", timeout=30), body)
    time.sleep(0.2)
    answer = httpx.get(f"{second}/media/{media_hash}", timeout=30)
    tally.check(answer, body)
    return answer.headers.get("x-cache") == "HIT"


@pytest.mark.parametrize("kind", ["sentinel", "cluster", "cluster-replicas"])
def test_master_killed_under_load_no_error_no_wrong_byte(
    kind: str, s3_server, tmp_path: Path, record_property
) -> None:
    rng = random.Random(kind)
    with running(kind) as topology, two_replicas(topology, s3_server.url, tmp_path) as replicas:
        bodies = [os.urandom(rng.randrange(4_000, 40_000)) for _ in range(20 + 40 + 150)]
        hashes = asyncio.run(_upload_all(replicas, bodies))
        objects = dict(zip(hashes, bodies, strict=True))
        hot = dict(list(objects.items())[:20])
        cold = dict(list(objects.items())[20:60])
        probes = list(objects.items())[60:]
        probe_tally = Tally()
        for media_hash, body in hot.items():  # cached: Redis and the L1s
            for service in replicas.services:
                probe_tally.check(httpx.get(f"{service.url}/media/{media_hash}"), body)
        assert _probe(replicas, probes, probe_tally), "Redis hits before the fault"
        s3_server.start_recording()
        with Load(replicas, hot, cold) as load:
            time.sleep(2.0)
            killed, killed_at = _kill_a_master(topology)
            # A cluster without replicas needs its master back; a replica is promoted.
            restart = isinstance(topology, Cluster) and not isinstance(
                topology, ClusterWithReplicas
            )
            restarted_at = None
            recovered_at = None
            timeline: list[tuple[float, bool]] = []
            while recovered_at is None:
                now = time.monotonic()
                assert now - killed_at < DEADLINE, f"Redis hits never came back {timeline}"
                assert probes, f"out of probes {timeline}"
                if restart and restarted_at is None and now > killed_at + 5:
                    topology.restart(killed)  # returns once the cluster says ok
                    restarted_at = time.monotonic()
                started = time.monotonic()
                timeline.append((started - killed_at, _probe(replicas, probes, probe_tally)))
                # Back: five probes in a row hit, after at least one missed (the outage seen).
                recent = [hit for _, hit in timeline[-RECOVERED_AFTER:]]
                missed = any(not hit for _, hit in timeline)
                if missed and len(recent) == RECOVERED_AFTER and all(recent):
                    recovered_at = timeline[-RECOVERED_AFTER][0] + killed_at
                else:
                    time.sleep(0.1)
            time.sleep(2.0)  # and a little after
        if os.environ.get("FAILOVER_LOGS"):  # keep the services' logs for a look
            for i, service in enumerate(replicas.services):
                Path(os.environ["FAILOVER_LOGS"], f"{kind}-{i}.log").write_text(
                    service.log.read_text()
                )
        tally = load.tally
        per_object = Counter(
            r["url"].split("?")[0] for r in s3_server.recorded()
            if r["method"] == "GET" and "/moto-api/" not in r["url"]
        )  # fmt: skip
    recovery = recovered_at - killed_at
    after_restart = None if restarted_at is None else recovered_at - restarted_at
    statuses = tally.statuses + probe_tally.statuses
    served = sum(statuses.values())
    record_property(f"failover_{kind}", {
        "requests": served, "statuses": dict(statuses), "errors": len(tally.errors),
        "wrong_bytes": tally.wrong_bytes + probe_tally.wrong_bytes,
        "recovery_s": round(recovery, 1),
        "s3_gets": sum(per_object.values()), "s3_objects": len(per_object),
        "s3_gets_max_per_object": max(per_object.values(), default=0),
        "after_cluster_ok_s": None if after_restart is None else round(after_restart, 1),
    })  # fmt: skip
    print("\n" + " ".join(f"{at:+.1f}{'H' if hit else 'm'}" for at, hit in timeline))
    extra = (
        ""
        if after_restart is None
        else (
            f" ({after_restart:.1f} s after the cluster said ok again, the killed master "
            f"restarted at +5 s)"
        )
    )
    print(f"\n[{kind}] master killed under load: {served} requests, statuses {dict(statuses)}, "
          f"{len(tally.errors)} transport errors, "
          f"{tally.wrong_bytes + probe_tally.wrong_bytes} wrong bodies; "
          f"Redis hits back {recovery:.1f} s after the kill{extra}; "
          f"S3 GETs {sum(per_object.values())} for {len(per_object)} objects, "
          f"at most {max(per_object.values(), default=0)} for one")  # fmt: skip
    assert tally.errors == []
    assert tally.wrong_bytes + probe_tally.wrong_bytes == 0
    assert set(statuses) == {200}


def _kill_a_master(topology: Topology):
    if isinstance(topology, Sentinel):
        node, at = topology.kill_master()
        return node, at
    node = topology.masters()[0]
    node.kill()
    return node, time.monotonic()
