"""SingleFlight across processes, against a real Redis, and the engine's cache queries."""

from __future__ import annotations

import asyncio
import time

from django.conf import settings

from mediacache.core.headers import build_cached
from mediacache.core.objects import MediaObject
from mediacache.tiers.redis import RedisTier
from mediacache.tiers.singleflight import SingleFlight

BODY = b"voice" * 100


def obj(media_hash: str) -> MediaObject:
    return MediaObject(
        media_hash, f"chat/{media_hash}", "audio/ogg", len(BODY), "", time.time() + 3600, "v.ogg"
    )


def flight_on(tier: RedisTier | None) -> SingleFlight:
    return SingleFlight(tier, wait=5, lock_ttl_ms=5000, lock_wait=3)


def test_a_claim_finds_the_copy_a_previous_holder_left(redis_client):
    """The lock is free because its holder filled Redis and released it between this
    process's miss and its claim: the claim returns that copy, not a store read."""

    async def scenario() -> None:
        tier = RedisTier(settings.REDIS_URL, timeout=1.0, retry_after=1.0)
        try:
            await tier.put(build_cached(obj("FilledBeforeClaim00001"), BODY), 60)
            claim = await flight_on(tier).claim("FilledBeforeClaim00001")
            assert claim.token is not None
            assert claim.cached is not None
            assert claim.cached.body == BODY
            await flight_on(tier).release("FilledBeforeClaim00001", claim.token)
            assert not await tier.is_locked("FilledBeforeClaim00001")
        finally:
            await tier.close()

    asyncio.run(scenario())


def test_a_claim_while_another_process_reads_waits_for_its_copy(redis_client):
    async def scenario() -> None:
        tier = RedisTier(settings.REDIS_URL, timeout=1.0, retry_after=1.0)
        try:
            assert await tier.lock("HeldElsewhere000000001", "other-process", 5000)
            waiting = asyncio.ensure_future(flight_on(tier).claim("HeldElsewhere000000001"))
            await asyncio.sleep(0.1)
            assert not waiting.done()
            await tier.put(build_cached(obj("HeldElsewhere000000001"), BODY), 60)
            claim = await asyncio.wait_for(waiting, 3)
            assert claim.token is None  # not ours: nothing to release
            assert claim.cached is not None
            assert claim.cached.body == BODY
        finally:
            await tier.close()

    asyncio.run(scenario())


def test_a_claim_after_the_other_reader_gave_up_reads_itself(redis_client):
    async def scenario() -> None:
        tier = RedisTier(settings.REDIS_URL, timeout=1.0, retry_after=1.0)
        try:
            assert await tier.lock("GaveUp0000000000000001", "other-process", 5000)
            waiting = asyncio.ensure_future(flight_on(tier).claim("GaveUp0000000000000001"))
            await asyncio.sleep(0.1)
            await tier.unlock("GaveUp0000000000000001", "other-process")
            claim = await asyncio.wait_for(waiting, 3)
            assert claim.token is None
            assert claim.cached is None
        finally:
            await tier.close()

    asyncio.run(scenario())


def test_without_redis_every_process_reads_itself():
    claim = asyncio.run(flight_on(None).claim("NoRedis000000000000001"))
    assert claim.token is None
    assert claim.cached is None


def test_cached_in_asks_redis_once_for_many_links(redis_client):
    from mediacache.engine import Engine

    engine = Engine.from_django()
    assert engine.warm(obj("WarmedIntoRedis0000001"), BODY)
    assert engine.cached_in(["WarmedIntoRedis0000001", "NeverCached00000000001"]) == {
        "WarmedIntoRedis0000001": "redis",
        "NeverCached00000000001": "",
    }


def test_cached_in_says_unknown_when_redis_is_down():
    from mediacache.engine import Engine

    engine = Engine.from_django(REDIS_URL="redis://127.0.0.1:9/0")
    assert engine.cached_in(["AnyHash000000000000001"]) == {"AnyHash000000000000001": None}


def test_warm_refuses_what_is_too_large_or_expired_without_reading_anything():
    from mediacache.engine import Engine

    engine = Engine.from_django(REDIS_URL="", CACHE_MAX_OBJECT_BYTES=10)
    assert not engine.warm(obj("TooLarge00000000000001"))  # the store is never asked
    expired = MediaObject("Expired000000000000001", "chat/e", "audio/ogg", 1, "", time.time() - 1)
    assert not Engine.from_django(REDIS_URL="").warm(expired)
