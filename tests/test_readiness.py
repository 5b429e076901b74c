"""``/readyz`` says whether this replica can serve, on the service as production runs it.

``scripts/serve.sh`` with 2 workers: ready on fresh embedded defaults (the local store's
directory is made at start-up, not by the first upload); still ready, degraded, when its
Redis is killed (links come from the store); not ready when the store or the database
cannot be reached. ``/healthz`` answers 200 throughout (liveness only).
"""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.conftest import FIXTURES
from tests.servers import RedisProcess, free_port
from tests.service_process import PROXIED, production_environment, serve_sh


def test_fresh_embedded_defaults_are_ready_before_the_first_upload(tmp_path: Path):
    environment = production_environment(tmp_path)
    media = tmp_path / "var" / "media"
    assert not media.exists()
    with serve_sh(environment, tmp_path / "serve.log") as service:
        assert media.is_dir()  # made at start-up, before any request for it
        ready = httpx.get(f"{service.url}/readyz", timeout=10)
        assert ready.status_code == 200, ready.text
        body = ready.json()
        assert (body["status"], body["down"], body["degraded"]) == ("ok", [], [])
        assert set(body["checks"]) == {"database", "store"}  # no Redis configured


def test_redis_killed_is_degraded_and_links_are_still_served(tmp_path: Path):
    with RedisProcess() as redis_server:
        environment = production_environment(
            tmp_path, REDIS_URL=redis_server.url, MEDIA_L1_BYTES="0"
        )
        with serve_sh(environment, tmp_path / "serve.log") as service:
            headers = {**PROXIED, "Authorization": f"Bearer {service.api_key()}"}
            body = (FIXTURES / "voice.ogg").read_bytes()
            created = httpx.post(
                f"{service.url}/api/attachments/",
                headers=headers,
                files={"file": ("voice.ogg", body)},
                timeout=30,
            )
            assert created.status_code == 201, created.text
            path = created.json()["short_url"].removeprefix("https://media.example.com")
            before = httpx.get(f"{service.url}/readyz", timeout=10).json()
            assert before["status"] == "ok"
            assert before["checks"]["redis"]["ok"] is True

            redis_server.kill()
            ready = httpx.get(f"{service.url}/readyz", timeout=10)
            assert ready.status_code == 200, ready.text
            payload = ready.json()
            assert (payload["status"], payload["down"], payload["degraded"]) == (
                "degraded",
                [],
                ["redis"],
            )
            assert payload["checks"]["redis"]["ok"] is False
            assert payload["checks"]["database"]["ok"] is True
            assert payload["checks"]["store"]["ok"] is True
            # What "degraded" promises: the link is served, from the store.
            served = httpx.get(f"{service.url}{path}", timeout=10)
            assert served.status_code == 200
            assert served.content == body
            assert httpx.get(f"{service.url}/healthz").status_code == 200


def test_an_unreachable_store_is_not_ready(tmp_path: Path):
    closed = free_port()  # nothing listens there
    environment = production_environment(
        tmp_path,
        S3_BUCKET="media",
        S3_ENDPOINT_URL=f"http://127.0.0.1:{closed}",
        S3_ACCESS_KEY_ID="x",
        S3_SECRET_ACCESS_KEY="x",
        S3_REGION="us-east-1",
        S3_MAX_ATTEMPTS="1",
        S3_CONNECT_TIMEOUT="1",
    )
    with serve_sh(environment, tmp_path / "serve.log") as service:
        ready = httpx.get(f"{service.url}/readyz", timeout=10)
        assert ready.status_code == 503, ready.text
        payload = ready.json()
        assert (payload["status"], payload["down"]) == ("down", ["store"])
        assert "EndpointConnectionError" in payload["checks"]["store"]["error"]
        assert payload["checks"]["database"]["ok"] is True
        assert httpx.get(f"{service.url}/healthz").status_code == 200


def test_an_unreachable_database_is_not_ready(tmp_path: Path):
    closed = free_port()
    environment = production_environment(
        tmp_path,
        DATABASE_URL=f"postgres://mediacache@127.0.0.1:{closed}/mediacache",
        MIGRATE_ON_START="0",
    )
    with serve_sh(environment, tmp_path / "serve.log") as service:
        ready = httpx.get(f"{service.url}/readyz", timeout=10)
        assert ready.status_code == 503, ready.text
        payload = ready.json()
        assert (payload["status"], payload["down"]) == ("down", ["database"])
        assert payload["checks"]["store"]["ok"] is True
        assert httpx.get(f"{service.url}/healthz").status_code == 200
