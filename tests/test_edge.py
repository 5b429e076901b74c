"""A shared cache in front, kept honest: the headers it reads on both serving paths, and the
purge a delete sends it (to the recording double of tests/edge_double.py)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from mediacache.edge import CloudflarePurger, EdgePurgeHook
from mediacache.engine import get_engine
from mediacache.serving.app import MediaApp
from tests.conftest import upload
from tests.edge_double import EdgeDouble, engine_purging


@pytest.fixture
def fast_answers(monkeypatch) -> list[int]:
    """One entry per answer the L1-hit shortcut wrote."""
    taken: list[int] = []
    original = MediaApp.record_l1_hit

    def spy(app, *args, **kwargs):
        taken.append(1)
        return original(app, *args, **kwargs)

    monkeypatch.setattr(MediaApp, "record_l1_hit", spy)
    return taken


@pytest.fixture
def edge() -> Iterator[EdgeDouble]:
    """The process's engine purges a Cloudflare double, by tag, for the test."""
    with EdgeDouble() as double:
        purger = CloudflarePurger(
            zone_id="zone", token="t", link_of=str, api_url=double.url, timeout=5
        )
        with engine_purging(EdgePurgeHook(purger, backoff=0.01)):
            yield double


def shared_cache_headers(response: httpx.Response) -> tuple[str, str, str]:
    h = response.headers
    return h["cache-control"], h["surrogate-key"], h["cache-tag"]


def test_every_serving_path_tells_shared_caches_the_same(api, voice_note, fast_answers):
    created = upload(api, voice_note, "voice.ogg")
    link, tag = created["short_url"], f"media-{created['media_hash']}"
    miss = httpx.get(link)  # ASGI, from the store
    asgi_hit = httpx.get(link, headers={"If-None-Match": '"other"'})  # ASGI, from L1
    fast_hit = httpx.get(link)  # the protocol's shortcut
    assert (miss.headers["x-cache"], asgi_hit.headers["x-cache"]) == ("MISS", "HIT")
    assert fast_answers == [1]
    for response in (miss, asgi_hit, fast_hit):
        control, surrogate_key, cache_tag = shared_cache_headers(response)
        assert (surrogate_key, cache_tag) == (tag, tag)
        assert control == "public, max-age=604800, s-maxage=3600"  # a variant may come later
    ranged = httpx.get(link, headers={"Range": "bytes=0-9"})
    assert ranged.status_code == 206
    assert shared_cache_headers(ranged) == shared_cache_headers(fast_hit)


def test_the_upload_as_it_came_is_immutable(api, voice_note):
    created = upload(api, voice_note, "voice.ogg")
    original = httpx.get(created["original_url"])
    assert original.status_code == 200
    control, surrogate_key, _ = shared_cache_headers(original)
    assert control == "public, max-age=604800, s-maxage=3600, immutable"
    assert surrogate_key == f"media-{created['media_hash']}.original"


def test_errors_are_never_kept_by_a_shared_cache(live):
    response = httpx.get(f"{live.url}/media/{'x' * 22}")
    assert response.status_code == 404
    assert response.headers["cache-control"] == "no-store"
    assert "surrogate-key" not in response.headers


def test_a_delete_purges_both_links_at_the_edge_without_waiting_for_it(api, voice_note, edge):
    created = upload(api, voice_note, "voice.ogg")
    media_hash = created["media_hash"]
    edge.hold = True  # the CDN takes the purge and does not answer yet
    assert api.delete(f"/api/attachments/{created['id']}").status_code == 204
    (sent,) = edge.wait_for(1)  # the delete answered while the purge was still held
    assert sent.path == "/zones/zone/purge_cache"
    assert sent.json() == {"tags": [f"media-{media_hash}", f"media-{media_hash}.original"]}
    edge.release()
    assert get_engine().edge.flush(10)
    assert httpx.get(created["short_url"]).status_code == 404


def test_a_failing_edge_never_fails_the_delete(api, voice_note, edge, caplog):
    created = upload(api, voice_note, "voice.ogg")
    edge.fail_next = 10
    assert api.delete(f"/api/attachments/{created['id']}").status_code == 204
    assert get_engine().edge.flush(10)
    assert "[MEDIA EDGE] purge failed (cloudflare) for 2 objects after 3 attempts" in caplog.text
