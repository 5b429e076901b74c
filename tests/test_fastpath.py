"""The server's L1-hit shortcut (mediacache.serving.fastpath) against the ASGI path it skips.

The whole suite runs under the shortcut's protocol (tests/servers.py); these tests
show that it answers exactly what the ASGI path answers, byte for byte, and that
every request it must not take (ranges, revalidation, misses, 404s, pipelined
requests, ``Connection: close``) still gets the full path's answer.
"""

from __future__ import annotations

import socket
import time
from datetime import datetime
from email.utils import formatdate, parsedate_to_datetime

import httpx
import pytest

from mediacache.serving.app import MediaApp
from tests.conftest import upload


class Taken:
    """Counts the answers the shortcut wrote (MediaApp.record_l1_hit is its only caller)."""

    def __init__(self, monkeypatch) -> None:
        self.count = 0
        original = MediaApp.record_l1_hit

        def spy(app, *args, **kwargs):
            self.count += 1
            return original(app, *args, **kwargs)

        monkeypatch.setattr(MediaApp, "record_l1_hit", spy)


@pytest.fixture
def taken(monkeypatch) -> Taken:
    return Taken(monkeypatch)


@pytest.fixture
def hot(api, voice_note) -> dict:
    """An uploaded voice note, fetched once so it sits in L1."""
    created = upload(api, voice_note, "voice.ogg")
    assert httpx.get(created["short_url"]).status_code == 200
    return created


def exchange(url: str, raw_requests: bytes, answers: int = 1) -> list[bytes]:
    """Send raw bytes on one connection; read ``answers`` full responses (by Content-Length)."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(raw_requests)
        buffer, out = b"", []
        while len(out) < answers:
            while b"\r\n\r\n" not in buffer:
                chunk = sock.recv(65536)
                if not chunk:
                    return out
                buffer += chunk
            head, _, buffer = buffer.partition(b"\r\n\r\n")
            length = 0
            is_head = raw_requests.startswith(b"HEAD") and len(out) == 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.lower() == b"content-length" and not is_head:
                    length = int(value)
            while len(buffer) < length:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                buffer += chunk
            out.append(head + b"\r\n\r\n" + buffer[:length])
            buffer = buffer[length:]
        return out


def request(path: str, *extra: str, method: str = "GET") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: test", *extra, "", ""]
    return "\r\n".join(lines).encode()


def without_date(response: bytes) -> bytes:
    return b"\r\n".join(line for line in response.split(b"\r\n") if not line.startswith(b"date:"))


def date_of(response: bytes) -> bytes:
    (date,) = [line for line in response.split(b"\r\n") if line.startswith(b"date: ")]
    return date.removeprefix(b"date: ")


def path_of(created: dict) -> str:
    return "/media/" + created["media_hash"]


def test_a_hit_is_byte_identical_to_the_asgi_answer(live, hot, taken):
    path = path_of(hot)
    # A non-matching If-None-Match is a plain 200 that must go the full (ASGI) way.
    (full,) = exchange(live.url, request(path, 'If-None-Match: "other"'))
    assert taken.count == 0
    (fast,) = exchange(live.url, request(path))
    assert taken.count == 1
    assert fast.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"\r\nx-cache: HIT\r\n" in fast
    assert b"\r\nlast-modified: " in fast  # precomputed with the other headers
    assert without_date(fast) == without_date(full)


def test_a_hit_carries_the_servers_current_date(live, hot, taken):
    """The shortcut serialises uvicorn's date line once per date; the byte-identity test
    above strips it, so a stale one is caught here."""
    path = path_of(hot)
    full = request(path, 'If-None-Match: "other"')
    dates = []
    for attempt in range(2):
        if attempt:
            time.sleep(1.5)  # uvicorn renews its date every second
        (before,) = exchange(live.url, full)
        (fast,) = exchange(live.url, request(path))
        (after,) = exchange(live.url, full)
        assert taken.count == attempt + 1
        # The ASGI path's date just before or just after: the server's current one.
        assert date_of(fast) in {date_of(before), date_of(after)}
        sent = parsedate_to_datetime(date_of(fast).decode()).timestamp()
        assert abs(time.time() - sent) < 3
        dates.append(date_of(fast))
    assert dates[0] != dates[1]


def test_head_has_the_headers_and_no_body_and_the_connection_goes_on(live, hot, taken):
    path = path_of(hot)
    head, get = exchange(live.url, request(path, method="HEAD") + request(path), answers=2)
    assert taken.count == 2
    assert head.endswith(b"\r\n\r\n")
    assert f"content-length: {hot['size']}".encode() in head
    assert get.startswith(b"HTTP/1.1 200 OK")
    assert len(get.partition(b"\r\n\r\n")[2]) == hot["size"]


def test_pipelined_requests_are_answered_in_order(live, hot, taken):
    path = path_of(hot)
    burst = request(path) + request("/healthz") + request(path, "Range: bytes=0-9") + request(path)
    answers = exchange(live.url, burst, answers=4)
    statuses = [a.split(b"\r\n", 1)[0] for a in answers]
    assert statuses == [
        b"HTTP/1.1 200 OK",
        b"HTTP/1.1 200 OK",
        b"HTTP/1.1 206 Partial Content",
        b"HTTP/1.1 200 OK",
    ]
    assert b"content-range: bytes 0-9/" in answers[2]
    assert b'"status"' in answers[1] or b"ok" in answers[1].lower()


@pytest.mark.parametrize(
    ("extra", "status"),
    [
        ("Range: bytes=0-99", b"206"),
        ("If-None-Match: {etag}", b"304"),
        ("Connection: close", b"200"),
        ('If-Match: "other"', b"412"),
        ("If-Match: {etag}", b"200"),
        ("If-Unmodified-Since: Sun, 06 Nov 1994 08:49:37 GMT", b"412"),
        ("If-Modified-Since: {last_modified}", b"304"),
        ("Range: bytes=0-99\r\nIf-Range: {last_modified}", b"206"),
        ("Range: bytes=0-99\r\nIf-Range: Sun, 06 Nov 1994 08:49:37 GMT", b"200"),
    ],
)
def test_requests_the_shortcut_leaves_to_the_full_path(live, hot, taken, extra, status):
    uploaded = datetime.fromisoformat(hot["created_at"]).timestamp()
    extra = extra.format(
        etag=f'"{hot["sha256"]}"', last_modified=formatdate(int(uploaded), usegmt=True)
    )
    (answer,) = exchange(live.url, request(path_of(hot), extra))
    assert answer.split(b" ", 2)[1] == status
    assert taken.count == 0


def test_misses_404s_and_deleted_objects_take_the_full_path(api, live, hot, taken):
    created = upload(api, b"%PDF-1.4 not cached yet", "a.pdf")
    (miss,) = exchange(live.url, request(path_of(created)))
    assert b"x-cache: MISS" in miss
    (unknown,) = exchange(live.url, request("/media/" + "A" * 22))
    assert unknown.startswith(b"HTTP/1.1 404")
    assert api.delete(f"/api/attachments/{hot['id']}").status_code == 204
    (gone,) = exchange(live.url, request(path_of(hot)))
    assert gone.startswith(b"HTTP/1.1 404")
    assert taken.count == 0


def test_an_expired_entry_in_l1_is_not_served(live, hot, taken):
    from chat.models import MessageAttachment
    from mediacache.engine import get_engine

    entry = get_engine().l1.get(hot["media_hash"])
    entry.obj = type(entry.obj)(**{**_fields(entry.obj), "expires_at": time.time() - 1})
    MessageAttachment.objects.filter(pk=hot["id"]).update(expires_at="2000-01-01T00:00:00Z")
    (answer,) = exchange(live.url, request(path_of(hot)))
    assert answer.startswith(b"HTTP/1.1 404")
    assert taken.count == 0


def _fields(obj) -> dict:
    return {name: getattr(obj, name) for name in obj.__dataclass_fields__}


def test_query_string_and_extension_are_served_by_the_shortcut(live, hot, taken):
    (answer,) = exchange(live.url, request(path_of(hot) + ".ogg?timestamp=1732500000000"))
    assert answer.startswith(b"HTTP/1.1 200")
    assert taken.count == 1


class Wrapper:
    """A middleware as uvicorn adds them (ProxyHeadersMiddleware keeps ``.app``)."""

    def __init__(self, app) -> None:
        self.app = app


@pytest.mark.parametrize("l1_bytes", [0, 1024])
def test_the_shortcut_finds_the_media_app_behind_middleware_and_not_with_l1_off(l1_bytes):
    from mediacache.engine import Engine
    from mediacache.serving.fastpath import _NO_SHORTCUT, media_app_of
    from mediacache.serving.router import MediaRouter

    router = MediaRouter(object(), Engine.from_django(L1_BYTES=l1_bytes, REDIS_URL=""))
    assert media_app_of(Wrapper(router)) is None  # not started: ask again later
    media = router._media()
    found = media_app_of(Wrapper(Wrapper(router)))
    if l1_bytes:
        assert found == (b"/media/", media)
    else:
        assert found is _NO_SHORTCUT
    assert media_app_of(Wrapper(object())) is _NO_SHORTCUT
