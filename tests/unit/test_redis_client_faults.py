"""A Redis client that fails with something other than a RedisError (redis-py's asyncio
clients on a connection the server closed mid-failover: AttributeError from a None
transport, uvloop's RuntimeError; redis/redis-py#4287) is a Redis failure like any other:
the tier answers "not in Redis" and trips its breaker, never raises into the request."""

from __future__ import annotations

import asyncio

import pytest

from mediacache.tiers.redis import RedisTier

FAULTS = [
    AttributeError("'NoneType' object has no attribute 'writelines'"),
    RuntimeError(
        "unable to perform operation on <TCPTransport closed=True>; the handler is closed"
    ),
]


class _Broken:
    """Stands in for the client once its connection is in that state: every call fails."""

    def __init__(self, fault: Exception) -> None:
        self.fault = fault

    async def _raise(self, *args: object, **kwargs: object) -> None:
        raise self.fault

    mget = set = exists = eval = _raise

    def pipeline(self, *args: object, **kwargs: object) -> _Broken:
        return self

    async def execute(self) -> None:
        raise self.fault


@pytest.mark.parametrize("fault", FAULTS, ids=type)
def test_the_tier_survives_client_faults(fault):
    tier = RedisTier("redis://127.0.0.1:9/0", timeout=0.1, retry_after=1.0)
    tier.client = _Broken(fault)  # type: ignore[assignment]

    async def scenario() -> tuple[object, object, bool]:
        got = await tier.get("h")
        locked = await tier.lock("h", "token", 1000)
        held = await tier.is_locked("h")
        await tier.put_gone("h", 60)
        await tier.unlock("h", "token")
        return got, locked, held

    got, locked, held = asyncio.run(scenario())
    assert (got, locked, held) == (None, None, False)
    assert tier.breaker.failures >= 3
