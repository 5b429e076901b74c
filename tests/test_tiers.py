"""The tiers across processes: each server below has its own engine (its own L1 and
single-flight), as separate worker processes would, sharing Redis, PostgreSQL and S3."""

from __future__ import annotations

import asyncio
import time

import httpx
import redis
from django.conf import settings

from mediacache.tiers.codec import redis_key, tail_key
from tests.conftest import upload
from tests.servers import RedisProcess
from tests.test_failures import serve_engine


def s3_gets(s3_server) -> int:
    return sum(
        1 for r in s3_server.recorded() if r["method"] == "GET" and "/moto-api/" not in r["url"]
    )


async def _burst(urls: list[str]) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=len(urls))
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        return await asyncio.gather(*(client.get(url) for url in urls))


def test_stampede_of_200_cold_requests_across_two_processes_reads_s3_once(api, s3_server):
    body = bytes(range(256)) * 300
    created = upload(api, body, "blob.bin")
    # What is under test is the coordination, not the Redis timeout: a generous one
    # keeps a loaded CI machine's stalls from switching Redis off mid-burst.
    with serve_engine(REDIS_TIMEOUT=2.0) as first, serve_engine(REDIS_TIMEOUT=2.0) as second:
        s3_server.start_recording()
        path = f"/media/{created['media_hash']}"
        urls = [f"{(first, second)[i % 2].url}{path}" for i in range(200)]
        responses = asyncio.run(_burst(urls))
        assert all(r.status_code == 200 and r.content == body for r in responses)
        assert s3_gets(s3_server) == 1


def test_delete_reaches_the_l1_of_every_process_at_once(api, voice_note, redis_client):
    created = upload(api, voice_note, "v.ogg")
    with serve_engine(L1_TTL=3600) as other:
        url = f"{other.url}/media/{created['media_hash']}"
        assert httpx.get(url).headers["x-cache"] == "MISS"
        assert httpx.get(url).headers["x-cache"] == "HIT"  # now in that process's L1
        # Wait until its invalidation listener is subscribed.
        deadline = time.monotonic() + 5
        while redis_client.pubsub_numsub("mediacache:invalidate")[0][1] < 2:
            assert time.monotonic() < deadline, "listener never subscribed"
            time.sleep(0.02)
        assert api.delete(f"/api/attachments/{created['id']}").status_code == 204
        deadline = time.monotonic() + 2
        while httpx.get(url).status_code != 404:
            assert time.monotonic() < deadline, "the other process still serves a deleted object"
            time.sleep(0.02)


def test_l1_hit_needs_no_redis_round_trip(api, voice_note):
    created = upload(api, voice_note, "v.ogg")
    # A private Redis: its command counts are this test's alone.
    with RedisProcess() as private, serve_engine(REDIS_URL=private.url) as other:
        client = redis.Redis.from_url(private.url)
        url = f"{other.url}/media/{created['media_hash']}"
        httpx.get(url)

        def reads() -> int:
            stats = client.info("commandstats")
            return sum(stats.get(f"cmdstat_{c}", {}).get("calls", 0) for c in ("get", "mget"))

        before = reads()
        for _ in range(20):
            assert httpx.get(url).headers["x-cache"] == "HIT"
        assert reads() == before


def test_big_values_are_split_and_read_back_whole(api, redis_client):
    body = bytes(range(256)) * 200  # 51,200 bytes: split in two keys
    created = upload(api, body, "b.bin")
    with serve_engine(L1_BYTES=0) as other:
        url = f"{other.url}/media/{created['media_hash']}"
        assert httpx.get(url).headers["x-cache"] == "MISS"
        hit = httpx.get(url)
        assert hit.headers["x-cache"] == "HIT"
        assert hit.content == body
        assert redis_client.exists(tail_key(created["media_hash"]))
        # One half evicted: a miss and a refill, never a truncated body.
        redis_client.delete(tail_key(created["media_hash"]))
        again = httpx.get(url)
        assert again.headers["x-cache"] == "MISS"
        assert again.content == body
    assert settings.MEDIACACHE["CACHE_TTL"] >= redis_client.ttl(redis_key(created["media_hash"]))
