"""Counting what happens: /metrics, the stats command, /healthz and /readyz."""

from __future__ import annotations

import json
import time

import httpx
from django.core.management import call_command
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import upload
from tests.servers import RedisProcess
from tests.test_failures import serve_engine


def scrape(url: str) -> dict[tuple[str, tuple], float]:
    text = httpx.get(f"{url}/metrics").text
    values = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            values[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return values


def requests_by_outcome(values, outcome: str) -> float:
    return values.get(("mediacache_media_requests_total", (("outcome", outcome),)), 0.0)


def flush() -> None:
    from mediacache.engine import get_engine
    from mediacache.observability.flusher import flush_now

    flush_now(get_engine())


def stats_report(minutes: int = 10) -> dict:
    from io import StringIO

    out = StringIO()
    call_command("media_cache_stats", "--json", "--minutes", str(minutes), stdout=out)
    return json.loads(out.getvalue())


def test_metrics_and_stats_command_report_exact_counts(api, live, voice_note, redis_client):
    uploads = [upload(api, voice_note + bytes([i]), f"v{i}.ogg") for i in range(3)]
    flush()
    redis_client.flushdb()  # the stats command starts from empty buckets
    before = scrape(live.url)

    misses, hits = 3, 5
    for created in uploads:  # 3 misses
        assert httpx.get(created["short_url"]).headers["x-cache"] == "MISS"
    for _ in range(hits):  # 5 hits from L1
        assert httpx.get(uploads[0]["short_url"]).headers["x-cache"] == "HIT"
    assert httpx.get(f"{live.url}/media/{'Z' * 22}").status_code == 404

    expected = {"miss": misses, "hit_l1": hits, "not_found": 1, "hit_redis": 0, "error": 0}
    deadline = time.monotonic() + 5
    while True:  # the last request is counted right after its response is sent
        flush()
        after = scrape(live.url)
        deltas = {
            o: requests_by_outcome(after, o) - requests_by_outcome(before, o) for o in expected
        }
        if deltas == expected or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert deltas == expected
    gets = ("mediacache_store_requests_total", (("operation", "get"),))
    assert after.get(gets, 0) - before.get(gets, 0) == misses
    count = "mediacache_media_request_duration_seconds_count"
    assert after[(count, ())] - before.get((count, ()), 0) == misses + hits + 1
    media_bytes = (len(voice_note) + 1) * (misses + hits)  # error bodies are not media
    sent = ("mediacache_media_response_bytes_total", ())
    assert after[sent] - before.get(sent, 0) == media_bytes

    report = stats_report()
    assert report["requests"]["miss"] == misses
    assert report["requests"]["hit_l1"] == hits
    assert report["requests"]["not_found"] == 1
    assert report["hit_rate"] == hits / (hits + misses)
    assert report["s3_gets"] == misses
    assert report["redis"]["used_memory"] > 0
    assert report["redis"]["media_keys"] >= 3
    assert report["expiring_24h"] == 0


def test_stats_command_prints_a_table(api, live, voice_note):
    from io import StringIO

    out = StringIO()
    call_command("media_cache_stats", stdout=out)
    text = out.getvalue()
    for label in ("hit rate", "latency p50 / p95", "Redis used_memory", "S3 GETs", "expiring"):
        assert label in text


def test_metrics_need_a_token_when_one_is_set(api, live):
    with serve_engine(METRICS_TOKEN="s3cret") as server:
        assert httpx.get(f"{server.url}/metrics").status_code == 403
        ok = httpx.get(f"{server.url}/metrics", headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200
        assert "mediacache_media_requests_total" in ok.text


def test_healthz_and_readyz(live):
    assert httpx.get(f"{live.url}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{live.url}/readyz")
    assert ready.status_code == 200
    body = ready.json()
    assert body["status"] == "ok"
    assert set(body["checks"]) == {"database", "store", "redis"}
    assert all(check["latency_ms"] >= 0 for check in body["checks"].values())


def test_readyz_names_redis_when_it_is_stopped(live):
    """Redis down is degraded, not down: links are served from the store (fail open)."""
    with RedisProcess() as private_redis, serve_engine(REDIS_URL=private_redis.url) as server:
        assert httpx.get(f"{server.url}/readyz").status_code == 200
        private_redis.kill()
        response = httpx.get(f"{server.url}/readyz", timeout=10)
        assert response.status_code == 200
        assert (response.json()["status"], response.json()["degraded"]) == ("degraded", ["redis"])
