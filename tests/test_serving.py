"""GET/HEAD /media/{hash} end to end: real HTTP, real PostgreSQL, Redis and S3."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import httpx
import pytest
from django.utils import timezone

from tests.conftest import upload
from tests.media import HTML, pdf, png


@pytest.fixture
def voice(api, voice_note) -> dict:
    return upload(api, voice_note, "voice.ogg")


def test_upload_then_miss_then_hit_with_identical_bytes(api, voice, voice_note):
    first = httpx.get(voice["short_url"])
    second = httpx.get(voice["short_url"])
    assert first.status_code == second.status_code == 200
    assert first.headers["x-cache"] == "MISS"
    assert second.headers["x-cache"] == "HIT"
    assert first.content == second.content == voice_note
    assert hashlib.sha256(second.content).hexdigest() == voice["sha256"]
    assert second.headers["content-type"] == "audio/ogg; codecs=opus"  # a voice note
    assert second.headers["content-length"] == str(len(voice_note))


def test_hit_from_redis_when_l1_is_cold(api, voice, voice_note, redis_client):
    from mediacache.engine import get_engine

    assert httpx.get(voice["short_url"]).headers["x-cache"] == "MISS"
    get_engine().l1.clear()
    response = httpx.get(voice["short_url"])
    assert response.headers["x-cache"] == "HIT"
    assert response.content == voice_note
    ttl = redis_client.ttl(f"media:{voice['media_hash']}")
    assert 0 < ttl <= 7 * 24 * 3600


def test_response_headers(voice, voice_note):
    response = httpx.get(voice["short_url"])
    assert response.headers["etag"] == f'"{voice["sha256"]}"'
    assert response.headers["accept-ranges"] == "bytes"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["content-disposition"].startswith("inline")
    max_age = int(response.headers["cache-control"].removeprefix("public, max-age="))
    assert 0 < max_age <= 7 * 24 * 3600


def test_head_has_headers_and_no_body(voice, voice_note):
    response = httpx.head(voice["short_url"])
    assert response.status_code == 200
    assert response.content == b""
    assert response.headers["content-length"] == str(len(voice_note))


def test_if_none_match_gives_304(voice):
    etag = httpx.get(voice["short_url"]).headers["etag"]
    response = httpx.get(voice["short_url"], headers={"If-None-Match": f'"other", {etag}'})
    assert response.status_code == 304
    assert response.content == b""
    assert response.headers["etag"] == etag


@pytest.mark.parametrize(
    ("header", "expected"),
    [("bytes=0-9", (0, 9)), ("bytes=100-", (100, None)), ("bytes=-50", (-50, None))],
)
def test_single_range_gives_206(voice, voice_note, header, expected):
    response = httpx.get(voice["short_url"], headers={"Range": header})
    start, end = expected
    want = voice_note[start:] if end is None else voice_note[start : end + 1]
    assert response.status_code == 206
    assert response.content == want
    first = start if start >= 0 else len(voice_note) + start
    assert response.headers["content-range"] == (
        f"bytes {first}-{first + len(want) - 1}/{len(voice_note)}"
    )


def test_unsatisfiable_range_gives_416(voice, voice_note):
    response = httpx.get(voice["short_url"], headers={"Range": f"bytes={len(voice_note)}-"})
    assert response.status_code == 416
    assert response.headers["content-range"] == f"bytes */{len(voice_note)}"


def test_timestamp_query_is_ignored(voice, voice_note):
    response = httpx.get(voice["short_url"] + "?timestamp=1730000000000")
    assert response.status_code == 200
    assert response.content == voice_note


def test_extension_form_serves_the_same_object(voice, voice_note):
    response = httpx.get(voice["short_url"] + ".ogg?timestamp=1")
    assert response.status_code == 200
    assert response.content == voice_note


@pytest.mark.parametrize(
    "path",
    ["/media/", "/media/short", "/media/..%2Fetc%2Fpasswd", "/media/%2e%2e", "/media/a b",
     "/media/" + "A" * 40, "/media/AAAAAAAAAAAAAAAAAAAAAA/x", "/media/AAAAAAAAAAAAAAAAAAAAAA."],
)  # fmt: skip
def test_malformed_hash_is_404(live, path):
    response = httpx.get(live.url + path)
    assert response.status_code == 404
    assert response.json() == {"error": "not found"}


def test_unknown_hash_is_404_and_remembered(live, redis_client):
    unknown = "A" * 22
    assert httpx.get(f"{live.url}/media/{unknown}").status_code == 404
    assert redis_client.get(f"media:{unknown}") == b"MC0"
    assert httpx.get(f"{live.url}/media/{unknown}").status_code == 404


def test_expired_attachment_is_404(api, voice, s3_server):
    from chat.models import MessageAttachment

    MessageAttachment.objects.filter(pk=voice["id"]).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    s3_server.start_recording()
    assert httpx.get(voice["short_url"]).status_code == 404
    assert [r for r in s3_server.recorded() if "/moto-api/" not in r.get("url", "")] == []


def test_cached_entry_stops_serving_at_expiry(api, voice):
    from chat.models import MessageAttachment
    from mediacache.engine import get_engine

    assert httpx.get(voice["short_url"]).headers["x-cache"] == "MISS"
    # Pretend time has passed: the cached copy carries its own expiry.
    entry = get_engine().l1.get(voice["media_hash"])
    object.__setattr__(entry.obj, "expires_at", 0.0)
    MessageAttachment.objects.filter(pk=voice["id"]).update(expires_at=timezone.now())
    assert httpx.get(voice["short_url"]).status_code == 404


def test_object_missing_from_store_is_404(api, voice, s3):
    from chat.models import MessageAttachment

    key = MessageAttachment.objects.get(pk=voice["id"]).file.name
    s3.delete_object(Bucket="mediacache-test", Key=key)
    assert httpx.get(voice["short_url"]).status_code == 404


def test_other_methods_are_405(voice):
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        response = httpx.request(method, voice["short_url"])
        assert response.status_code == 405
        assert response.headers["allow"] == "GET, HEAD"


@pytest.mark.parametrize(
    ("body", "name", "mime", "disposition"),
    [
        (png(), "photo.png", "image/png", "inline"),
        (pdf(), "report.pdf", "application/pdf", "attachment"),
        (HTML, "voice.ogg", "application/octet-stream", "attachment"),
    ],
)
def test_type_comes_from_the_bytes(api, body, name, mime, disposition):
    created = upload(api, body, name)
    response = httpx.get(created["short_url"])
    assert response.content == body
    assert response.headers["content-type"] == mime
    assert response.headers["content-disposition"].startswith(disposition)
    assert response.headers["content-security-policy"] == "default-src 'none'; sandbox"
