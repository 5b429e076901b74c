"""The 404 limiter never refuses a link that exists, and rations the database for floods.

The serving app in-process (a dict resolver that counts its calls, a local directory
store): a limited client gets 429 only for hashes that do not exist, and the
lookups of limited clients take turns (mediacache.serving.ratelimit.LookupRation),
round-robin between addresses. Ordering is asserted, never wall time.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.files.storage import FileSystemStorage

from mediacache.core.hashes import new_media_hash
from mediacache.core.objects import MediaObject
from mediacache.core.settings import MediaSettings
from mediacache.serving.app import MediaApp
from mediacache.serving.ratelimit import LookupRation
from mediacache.store import FileSystemStore
from mediacache.tiers.lookup import MediaService
from mediacache.tiers.lru import BytesLRU

BODY = b"OggS" + bytes(200)
GUESSER = "203.0.113.66"
GATEWAY = "198.51.100.10"


class Links:
    """The database: a few real links, and a count of every question asked of it."""

    def __init__(self, count: int) -> None:
        self.objects = {}
        for i in range(count):
            media_hash = new_media_hash()
            self.objects[media_hash] = MediaObject(
                media_hash, f"chat/{i}.ogg", "audio/ogg", len(BODY), "ab" * 32,
                time.time() + 3600, f"{i}.ogg", time.time(),
            )  # fmt: skip
        self.asked: list[str] = []

    def resolve(self, media_hash: str) -> MediaObject | None:
        self.asked.append(media_hash)
        return self.objects.get(media_hash)


def build_app(tmp_path, links: Links, **settings) -> MediaApp:
    (tmp_path / "chat").mkdir(exist_ok=True)
    for obj in links.objects.values():
        (tmp_path / obj.key).write_bytes(BODY)
    store = FileSystemStore(FileSystemStorage(location=str(tmp_path)))
    service = MediaService(
        MediaSettings(LOG_HITS=False, **settings),
        resolver=links.resolve,
        store_of=lambda obj: store,
        l1=BytesLRU(1 << 20, 60),
        redis=None,
        executor=ThreadPoolExecutor(2),
    )
    return MediaApp(service, max_age=600, retry_after=5)


async def get(app: MediaApp, media_hash: str, client: str, forwarded: str | None = None) -> int:
    """One GET; the peer is the client itself, or the loopback proxy that forwarded it."""
    headers = [] if forwarded is None else [(b"x-forwarded-for", forwarded.encode())]
    peer = client if forwarded is None else "127.0.0.1"
    sent: list[dict] = []

    async def receive() -> dict:
        await asyncio.Event().wait()
        return {}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": f"/media/{media_hash}",
             "headers": headers, "client": (peer, 1)}  # fmt: skip
    await app(scope, receive, send)
    return sent[0]["status"]


def test_a_limited_client_gets_429_for_unknown_hashes_and_200_for_real_links(tmp_path):
    links = Links(3)
    app = build_app(tmp_path, links, NOT_FOUND_LIMIT=3, LIMITED_LOOKUPS_PER_SECOND=1000)
    valid = list(links.objects)

    async def scenario() -> None:
        statuses = [await get(app, new_media_hash(), GUESSER) for _ in range(6)]
        assert statuses == [404, 404, 404, 429, 429, 429]
        asked = len(links.asked)
        assert await get(app, valid[0], GUESSER) == 200  # uncached, limited: still served
        assert links.asked[asked:] == [valid[0]]
        assert await get(app, valid[0], GUESSER) == 200  # now from L1, no question asked
        assert len(links.asked) == asked + 1
        unknown = new_media_hash()
        assert await get(app, unknown, GUESSER) == 429
        assert await get(app, unknown, GUESSER) == 429  # the negative cache answers
        assert links.asked.count(unknown) == 1
        assert await get(app, valid[1], GATEWAY) == 200  # another client: not limited

    asyncio.run(scenario())


def test_behind_the_proxy_the_limit_is_per_client_not_per_proxy(tmp_path):
    links = Links(1)
    app = build_app(tmp_path, links, NOT_FOUND_LIMIT=3, LIMITED_LOOKUPS_PER_SECOND=1000)

    async def scenario() -> None:
        # The guesser forges the gateway's address; the proxy appends the real one.
        forged = [f"{GATEWAY}, {GUESSER}"] * 5
        statuses = [await get(app, new_media_hash(), GUESSER, f) for f in forged]
        assert statuses == [404, 404, 404, 429, 429]
        assert await get(app, new_media_hash(), GATEWAY, GATEWAY) == 404  # not limited

    asyncio.run(scenario())


def test_a_flood_waits_its_turns_and_another_clients_link_is_not_behind_it(tmp_path):
    links = Links(1)
    (valid,) = links.objects
    app = build_app(tmp_path, links, NOT_FOUND_LIMIT=1, LIMITED_LOOKUPS_PER_SECOND=20)
    burst = app.ration.burst  # one second's worth: 20

    async def scenario() -> None:
        assert await get(app, new_media_hash(), GUESSER) == 404
        assert await get(app, new_media_hash(), GATEWAY) == 404  # both limited now
        before = len(links.asked)
        flood = [asyncio.ensure_future(get(app, new_media_hash(), GUESSER)) for _ in range(60)]
        await asyncio.sleep(0)  # the flood arrives first: the burst, then a queue
        assert app.ration.waiting == 60 - burst
        assert await get(app, valid, GATEWAY) == 200
        # Round-robin: the gateway's link waited for a turn or two, not for the queue.
        assert len(links.asked) - before <= burst + 4
        assert set(await asyncio.gather(*flood)) == {429}  # every unknown hash: 429, in turn
        assert len(links.asked) - before == 61

    asyncio.run(scenario())


def test_the_same_address_s_link_waits_behind_its_own_flood_but_is_served(tmp_path):
    links = Links(1)
    (valid,) = links.objects
    app = build_app(tmp_path, links, NOT_FOUND_LIMIT=1, LIMITED_LOOKUPS_PER_SECOND=10)

    async def scenario() -> None:
        assert await get(app, new_media_hash(), GATEWAY) == 404
        flood = [asyncio.ensure_future(get(app, new_media_hash(), GATEWAY)) for _ in range(20)]
        await asyncio.sleep(0)
        assert app.ration.waiting == 10  # past the burst: queued, not refused
        assert await get(app, valid, GATEWAY) == 200
        assert set(await asyncio.gather(*flood)) == {429}

    asyncio.run(scenario())


def test_the_ration_hands_out_turns_round_robin_and_skips_the_departed():
    ration = LookupRation(1000, burst=1)
    order: list[str] = []

    async def one(client: str, tag: str) -> None:
        await ration.turn(client)
        order.append(tag)

    async def scenario() -> None:
        await ration.turn("warm-up")  # the burst is spent: everyone below queues
        tasks = [asyncio.ensure_future(one("a", f"a{i}")) for i in range(4)]
        tasks += [asyncio.ensure_future(one("b", f"b{i}")) for i in range(2)]
        gone = asyncio.ensure_future(one("c", "c0"))
        await asyncio.sleep(0)
        gone.cancel()
        await asyncio.gather(*tasks)
        assert ration.waiting == 0

    asyncio.run(scenario())
    assert order == ["a0", "b0", "a1", "b1", "a2", "a3"]


def test_bad_settings_refuse_to_start(tmp_path):
    with pytest.raises(ImproperlyConfigured, match="TRUSTED_PROXIES"):
        build_app(tmp_path, Links(0), TRUSTED_PROXIES=["*"])
    with pytest.raises(ImproperlyConfigured, match="LIMITED_LOOKUPS_PER_SECOND"):
        build_app(tmp_path, Links(0), LIMITED_LOOKUPS_PER_SECOND=0)
