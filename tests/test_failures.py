"""Dependencies failing: Redis killed, S3 unreachable, many misses at once, huge objects.

Each test that breaks something runs its own instance (redis-server on a free
port, a second service with its own engine): the shared services stay untouched.
"""

from __future__ import annotations

import asyncio
import hashlib

import httpx
import pytest

from mediacache.tiers.codec import redis_key
from tests.conftest import s3_storage_settings, upload
from tests.servers import RedisProcess, free_port, serve_asgi


def serve_engine(**overrides):
    from config.asgi import build_application
    from mediacache.engine import Engine

    store = overrides.pop("store", None)
    engine = Engine.from_django(store=store, **overrides)
    return serve_asgi(build_application(engine))


def media_url(server, created: dict) -> str:
    return f"{server.url}/media/{created['media_hash']}"


def test_redis_killed_mid_test_still_serves_from_the_store(api, voice_note):
    created = upload(api, voice_note, "v.ogg")
    with (
        RedisProcess() as private_redis,
        serve_engine(REDIS_URL=private_redis.url, L1_BYTES=0, REDIS_RETRY_AFTER=0.2) as server,
    ):
        url = media_url(server, created)
        assert httpx.get(url).headers["x-cache"] == "MISS"
        assert httpx.get(url).headers["x-cache"] == "HIT"  # from Redis: L1 is off

        private_redis.kill()
        for _ in range(3):
            response = httpx.get(url, timeout=10)
            assert response.status_code == 200
            assert response.headers["x-cache"] == "MISS"
            assert response.content == voice_note


def test_store_unreachable_is_503_with_retry_after_and_not_cached(api, voice_note, s3_server):
    from django.core.files.storage import storages

    from mediacache.store import S3Store

    created = upload(api, voice_note, "v.ogg")
    dead = storages.create_storage(s3_storage_settings(f"http://127.0.0.1:{free_port()}"))
    dead.client_config = dead.client_config.merge(
        __import__("botocore.config").config.Config(
            connect_timeout=0.5, read_timeout=0.5, retries={"max_attempts": 0}
        )
    )
    with serve_engine(store=S3Store(dead)) as server:
        url = media_url(server, created)
        response = httpx.get(url, timeout=10)
        assert response.status_code == 503
        assert response.headers["retry-after"]
        assert response.json()["error"]
        # Nothing bad was cached: the shared service still serves it.
        assert httpx.get(created["short_url"]).status_code == 200


def test_concurrent_misses_fetch_from_s3_once(api, s3_server):
    body = bytes(range(256)) * 200
    created = upload(api, body, "blob.bin")
    s3_server.start_recording()

    async def fetch_all() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=30) as client:
            return await asyncio.gather(*(client.get(created["short_url"]) for _ in range(50)))

    responses = asyncio.run(fetch_all())
    assert all(r.status_code == 200 and r.content == body for r in responses)
    gets = [
        r for r in s3_server.recorded() if r["method"] == "GET" and "/moto-api/" not in r["url"]
    ]
    assert len(gets) == 1


@pytest.mark.parametrize("cap", [1000])
def test_large_objects_stream_from_the_store_and_are_not_cached(api, redis_client, cap):
    body = hashlib.sha256(b"seed").digest() * 4096  # 128 KiB, over the cap
    created = upload(api, body, "big.bin")
    with serve_engine(CACHE_MAX_OBJECT_BYTES=cap, STREAM_CHUNK_BYTES=4096) as server:
        url = media_url(server, created)
        for _ in range(2):
            response = httpx.get(url)
            assert response.status_code == 200
            assert response.headers["x-cache"] == "MISS"
            assert response.content == body
        partial = httpx.get(url, headers={"Range": "bytes=5000-70000"})
        assert partial.status_code == 206
        assert partial.content == body[5000:70001]
        assert partial.headers["content-range"] == f"bytes 5000-70000/{len(body)}"
        head = httpx.head(url)
        assert head.headers["content-length"] == str(len(body))
        assert head.content == b""
    assert redis_client.get(redis_key(created["media_hash"])) is None
