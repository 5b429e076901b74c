"""Two replicas of the service (``scripts/serve.sh``, 2 workers each: 4 processes) on
each Redis topology, sharing one SQLite file, moto's S3 and the topology.

Single-flight across replicas: a burst of 200 cold GETs spread over both replicas
costs exactly one S3 GET (moto's recorder counts them).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import BUCKET, S3_KEY_ID, S3_SECRET
from tests.redis_topologies import Topology, running
from tests.servers import free_port
from tests.service_process import PROXIED, Service, production_environment, serve_sh
from tests.test_tiers import _burst, s3_gets

KINDS = ["standalone", "sentinel", "cluster", "cluster-replicas"]


@pytest.fixture(scope="module", params=KINDS)
def topology(request: pytest.FixtureRequest) -> Iterator[Topology]:
    with running(request.param) as started:
        yield started


@dataclass
class Replicas:
    services: list[Service]
    api_key: str

    def upload(self, body: bytes, name: str = "blob.bin") -> dict:
        response = httpx.post(
            f"{self.services[0].url}/api/attachments/",
            files={"file": (name, body)},
            headers={**PROXIED, "Authorization": f"Bearer {self.api_key}"},
            timeout=30,
        )
        assert response.status_code == 201, response.text
        return response.json()

    def media_urls(self, media_hash: str, count: int) -> list[str]:
        """``count`` URLs of one object, alternating between the replicas."""
        services = self.services
        return [f"{services[i % len(services)].url}/media/{media_hash}" for i in range(count)]


@contextlib.contextmanager
def two_replicas(
    topology: Topology, s3_url: str, tmp_path: Path, **overrides: str
) -> Iterator[Replicas]:
    """Two ``serve.sh`` replicas on ``topology``: one database file, one bucket."""
    shared = production_environment(
        tmp_path,
        S3_BUCKET=BUCKET,
        S3_ENDPOINT_URL=s3_url,
        S3_ACCESS_KEY_ID=S3_KEY_ID,
        S3_SECRET_ACCESS_KEY=S3_SECRET,
        S3_REGION="us-east-1",
        MEDIA_VOICE_VARIANTS="0",
        **topology.environment(),
        **overrides,
    )
    with contextlib.ExitStack() as stack:
        services = []
        for i in range(2):
            environment = {
                **shared,
                "PORT": str(free_port()),
                "MIGRATE_ON_START": "1" if i == 0 else "0",
                "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / f"metrics{i}"),
            }
            services.append(stack.enter_context(serve_sh(environment, tmp_path / f"serve{i}.log")))
        yield Replicas(services, services[0].api_key())


def test_200_cold_gets_over_two_replicas_cost_one_s3_get(
    topology: Topology, s3_server, tmp_path: Path, record_property
) -> None:
    """Five rounds, a new object each: every round exactly one S3 GET. The Redis
    timeout is generous: what is under test is the coordination, not a loaded
    machine's stalls (a breaker opened by one would let a worker read S3 itself)."""
    topology.flush()
    rounds = []
    with two_replicas(topology, s3_server.url, tmp_path, MEDIA_REDIS_TIMEOUT="2") as replicas:
        for i in range(5):
            body = bytes([i]) * 40_000 + bytes(range(256)) * 40
            created = replicas.upload(body)
            s3_server.start_recording()
            responses = asyncio.run(_burst(replicas.media_urls(created["media_hash"], 200)))
            assert [r.status_code for r in responses] == [200] * 200
            assert all(r.content == body for r in responses)
            rounds.append(s3_gets(s3_server))
    record_property(f"stampede_s3_gets_{topology.kind}", rounds)
    print(
        f"\n[{topology.kind}] 200 cold GETs over 2 replicas x 2 workers: S3 GETs per round {rounds}"
    )
    assert rounds == [1] * 5
