"""GET/HEAD /media/{hash} end to end: real HTTP, real PostgreSQL, Redis and S3."""

from __future__ import annotations

import hashlib
import logging
import socket
import time
from datetime import datetime, timedelta
from email.utils import formatdate

import httpx
import pytest
from django.utils import timezone

from mediacache.tiers.codec import redis_key
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
    ttl = redis_client.ttl(redis_key(voice["media_hash"]))
    assert 0 < ttl <= 7 * 24 * 3600


def test_response_headers(voice, voice_note):
    response = httpx.get(voice["short_url"])
    assert response.headers["etag"] == f'"{voice["sha256"]}"'
    assert response.headers["accept-ranges"] == "bytes"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["content-disposition"].startswith("inline")
    public, max_age, s_maxage = response.headers["cache-control"].split(", ")
    assert public == "public"
    assert 0 < int(max_age.removeprefix("max-age=")) <= 7 * 24 * 3600
    assert 0 < int(s_maxage.removeprefix("s-maxage=")) <= 3600


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
    assert redis_client.get(redis_key(unknown)) == b"MC0"
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


def last_modified_of(created: dict) -> str:
    """The upload's created_at as the HTTP-date the service sends (whole seconds)."""
    return formatdate(int(datetime.fromisoformat(created["created_at"]).timestamp()), usegmt=True)


def an_http_date(seconds_from_upload: int, created: dict) -> str:
    uploaded = int(datetime.fromisoformat(created["created_at"]).timestamp())
    return formatdate(uploaded + seconds_from_upload, usegmt=True)


def test_every_answer_about_the_object_carries_its_upload_time(voice):
    from mediacache.engine import get_engine

    url, etag = voice["short_url"], f'"{voice["sha256"]}"'
    miss, hit = httpx.get(url), httpx.get(url)
    get_engine().l1.clear()
    from_redis = httpx.get(url)  # the upload time travelled through the Redis value
    answers = [miss, hit, from_redis, httpx.head(url),
               httpx.get(url, headers={"Range": "bytes=0-9"}),
               httpx.get(url, headers={"If-None-Match": etag})]  # fmt: skip
    assert [a.status_code for a in answers] == [200, 200, 200, 200, 206, 304]
    assert [a.headers.get("x-cache") for a in answers[:3]] == ["MISS", "HIT", "HIT"]
    assert {a.headers["last-modified"] for a in answers} == {last_modified_of(voice)}


def test_if_modified_since_gives_304_unless_if_none_match_is_there(voice):
    url = voice["short_url"]
    not_modified = httpx.get(url, headers={"If-Modified-Since": last_modified_of(voice)})
    assert not_modified.status_code == 304
    assert not_modified.content == b""
    assert not_modified.headers["etag"] == f'"{voice["sha256"]}"'
    assert not_modified.headers["last-modified"] == last_modified_of(voice)
    later = httpx.get(url, headers={"If-Modified-Since": an_http_date(3600, voice)})
    assert later.status_code == 304
    earlier = httpx.get(url, headers={"If-Modified-Since": an_http_date(-1, voice)})
    assert earlier.status_code == 200
    # RFC 9110 §13.1.3: with If-None-Match present, If-Modified-Since is not evaluated.
    both = {"If-Modified-Since": last_modified_of(voice), "If-None-Match": '"other"'}
    assert httpx.get(url, headers=both).status_code == 200
    unreadable = httpx.get(url, headers={"If-Modified-Since": "yesterday"})
    assert unreadable.status_code == 200


def test_if_match_and_if_unmodified_since_give_412(voice, voice_note):
    url, etag = voice["short_url"], f'"{voice["sha256"]}"'
    failed = httpx.get(url, headers={"If-Match": '"other"'})
    assert failed.status_code == 412
    assert failed.json() == {"error": "precondition failed"}
    assert httpx.get(url, headers={"If-Match": f"W/{etag}"}).status_code == 412  # strong only
    for tags in (etag, f'"other", {etag}', "*"):
        response = httpx.get(url, headers={"If-Match": tags})
        assert (response.status_code, response.content) == (200, voice_note)
    changed_since = {"If-Unmodified-Since": an_http_date(-1, voice)}
    assert httpx.get(url, headers=changed_since).status_code == 412
    assert httpx.get(url, headers={**changed_since, "If-Match": etag}).status_code == 200
    unchanged = {"If-Unmodified-Since": last_modified_of(voice)}
    assert httpx.get(url, headers=unchanged).status_code == 200
    assert httpx.head(url, headers={"If-Match": '"other"'}).status_code == 412


@pytest.mark.parametrize(
    ("if_range", "status"),
    [("{last_modified}", 206), ("{etag}", 206), ("W/{etag}", 200), ('"other"', 200),
     ("{a_second_later}", 200), ("{a_second_earlier}", 200)],
)  # fmt: skip
def test_if_range_takes_the_strong_etag_or_the_exact_date(voice, voice_note, if_range, status):
    header = if_range.format(
        last_modified=last_modified_of(voice),
        etag=f'"{voice["sha256"]}"',
        a_second_later=an_http_date(1, voice),
        a_second_earlier=an_http_date(-1, voice),
    )
    response = httpx.get(voice["short_url"], headers={"Range": "bytes=0-9", "If-Range": header})
    assert response.status_code == status
    assert response.content == (voice_note[:10] if status == 206 else voice_note)


BIG = 16 * 1024 * 1024  # over MEDIA_CACHE_MAX_OBJECT_BYTES: streamed from the store
READ_BEFORE_HANGING_UP = 1024 * 1024


@pytest.fixture
def big(api) -> tuple[dict, bytes]:
    body = hashlib.sha256(b"big").digest() * (BIG // 32)
    return upload(api, body, "big.bin"), body


def served_lines(caplog, media_hash: str) -> list[logging.LogRecord]:
    """The ``[MEDIA CACHE]`` lines of ``media_hash``, once the server (a thread) wrote them."""
    deadline = time.monotonic() + 10
    while True:
        lines = [r for r in caplog.records if getattr(r, "hash", None) == media_hash]
        if lines or time.monotonic() > deadline:
            return lines
        time.sleep(0.05)


def test_a_download_the_client_cuts_is_logged_as_cut_with_the_bytes_sent(live, big, caplog):
    created, body = big
    host, port = live.url.removeprefix("http://").split(":")
    with caplog.at_level(logging.INFO, logger="mediacache.serve"):
        whole = httpx.get(created["short_url"])
        assert whole.content == body
        assert whole.headers["last-modified"] == last_modified_of(created)  # streamed too
        (line,) = served_lines(caplog, created["media_hash"])
        assert f"status=200 bytes={BIG} duration=" in line.getMessage()
        caplog.clear()

        with socket.socket() as client:
            client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
            client.connect((host, int(port)))
            client.sendall(f"GET /media/{created['media_hash']} HTTP/1.1\r\nHost: t\r\n\r\n"
                           .encode())  # fmt: skip
            received = bytearray()
            while len(received) < READ_BEFORE_HANGING_UP:
                received += client.recv(65536)
        body_read = len(received) - received.index(b"\r\n\r\n") - 4
        (line,) = served_lines(caplog, created["media_hash"])
    message = line.getMessage()
    assert message.startswith(f"[MEDIA CACHE] MISS {created['media_hash']} tier=store status=200")
    assert f" bytes={line.bytes} cut duration=" in message
    assert line.cut is True
    # Everything the client read was sent; far from everything was (kernel buffers hold
    # a few MB between the two ends).
    assert body_read <= line.bytes < BIG - 4 * 1024 * 1024
