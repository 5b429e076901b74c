"""``/readyz`` shows the WhatsApp instance's connection in its details and never counts
it: a replica serves links whether or not the gateway's instance is connected. The state
is read from the Evolution double's ``/instance/connectionState``, cached per process,
and ``/readyz`` never waits for the read."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from mediacache.whatsapp import state as gateway


@pytest.fixture(autouse=True)
def fresh_cache() -> Iterator[None]:
    gateway.CACHE.clear()
    yield
    gateway.CACHE.clear()


def ready_until(url: str, done: Callable[[dict[str, Any]], bool]) -> httpx.Response:
    """/readyz until ``done(details.gateway)``: the read runs in the background."""
    deadline = time.monotonic() + 10
    while True:
        response = httpx.get(f"{url}/readyz", timeout=10)
        detail = response.json().get("details", {}).get("gateway", {})
        if done(detail) or time.monotonic() > deadline:
            return response
        time.sleep(0.05)


def test_readyz_shows_the_connection_state_and_its_status_ignores_it(live, evolution):
    ready = ready_until(live.url, lambda d: d.get("state") == "open")
    assert ready.status_code == 200
    detail = ready.json()["details"]["gateway"]
    assert (detail["instance"], detail["state"], detail["connected"]) == ("mc-test", "open", True)
    assert "gateway" not in ready.json()["checks"]  # a detail, not a check

    evolution.instance_state = "close"
    gateway.CACHE.clear()
    closed = ready_until(live.url, lambda d: d.get("state") == "close")
    assert closed.status_code == 200
    assert closed.json()["status"] == "ok"
    detail = closed.json()["details"]["gateway"]
    assert detail["connected"] is False
    assert "/instance/connect/mc-test" in detail["action"]


def test_readyz_reads_the_state_once_per_ttl(live, evolution):
    ready_until(live.url, lambda d: d.get("state") == "open")
    for _ in range(5):
        assert httpx.get(f"{live.url}/readyz").json()["details"]["gateway"]["state"] == "open"
    reads = [c for c in evolution.calls if c["endpoint"] == "connectionState"]
    assert len(reads) == 1


def test_readyz_does_not_wait_for_a_hung_gateway(live, evolution, monkeypatch):
    """The read has a timeout; until it ends /readyz answers "checking"."""
    monkeypatch.setattr(gateway, "TIMEOUT", 1.0)
    evolution.delay_next(5.0)
    first = httpx.get(f"{live.url}/readyz", timeout=10)
    assert first.status_code == 200
    assert first.json()["details"]["gateway"]["state"] == "checking"

    ended = ready_until(live.url, lambda d: d.get("state") == "unreachable")
    detail = ended.json()["details"]["gateway"]
    assert detail["state"] == "unreachable"
    assert detail["error"].startswith("EvolutionUnavailable: Evolution API did not answer in time")
    assert ended.status_code == 200


def test_readyz_has_no_gateway_detail_without_a_gateway(live, settings):
    settings.EVOLUTION = {**settings.EVOLUTION, "API_URL": ""}
    body = httpx.get(f"{live.url}/readyz").json()
    assert "gateway" not in body.get("details", {})
