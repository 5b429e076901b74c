"""The serving app under generated input: any path, Range and conditional headers.

Driven in-process through its ASGI interface (a pure-logic harness: a dict
resolver and a local directory store), so hypothesis can try thousands of
requests; none may raise, and each status must agree with the parsers. The same
harness plays a client that hangs up mid-answer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from email.utils import formatdate

import pytest
from django.core.files.storage import FileSystemStorage
from hypothesis import event, given, settings
from hypothesis import strategies as st

from mediacache.core.counters import STATS
from mediacache.core.hashes import media_key_from_path
from mediacache.core.objects import MediaObject
from mediacache.core.settings import MediaSettings
from mediacache.serving.app import MediaApp
from mediacache.serving.conditional import (
    NOT_MODIFIED,
    PRECONDITION_FAILED,
    UNSATISFIABLE,
    if_range_holds,
    parse_range,
    precondition,
)
from mediacache.store import FileSystemStore
from mediacache.tiers.lookup import MediaService
from mediacache.tiers.lru import BytesLRU

BODY = bytes(range(256)) * 8
HASH = "KnownHash0123456789abc"
UPLOADED = 1_732_500_000.75
LAST_MODIFIED = formatdate(int(UPLOADED), usegmt=True)
OBJ = MediaObject(
    HASH, "chat/k.bin", "audio/ogg", len(BODY), "ab" * 32, time.time() + 3600, "v.ogg", UPLOADED
)
ETAG = f'"{OBJ.sha256}"'


def build_app(tmp_path, **settings) -> MediaApp:
    (tmp_path / "chat").mkdir(exist_ok=True)
    (tmp_path / "chat" / "k.bin").write_bytes(BODY)
    store = FileSystemStore(FileSystemStorage(location=str(tmp_path)))
    service = MediaService(
        MediaSettings(LOG_HITS=False, NOT_FOUND_LIMIT=0, **settings),
        resolver=lambda key: OBJ if key == HASH else None,
        store_of=lambda obj: store,
        l1=BytesLRU(1 << 20, 60),
        redis=None,
        executor=ThreadPoolExecutor(2),
    )
    return MediaApp(service, max_age=600, retry_after=5)


async def connected():
    """A client that stays: its request, then nothing until the answer is done."""
    yield {"type": "http.request", "body": b"", "more_body": False}
    await asyncio.Event().wait()


def call(
    app: MediaApp,
    path: str,
    headers: list[tuple[bytes, bytes]],
    method: str = "GET",
    send=None,
    client=connected,
):
    sent: list[dict] = []

    async def record(message):
        sent.append(message)

    async def run() -> None:
        messages = client()
        scope = {"type": "http", "method": method, "path": path, "headers": headers,
                 "client": ("127.0.0.1", 1)}  # fmt: skip
        await app(scope, messages.__anext__, send or record)

    asyncio.run(run())
    if not sent:
        return None, {}, b""
    status = sent[0]["status"]
    body = b"".join(m.get("body", b"") for m in sent[1:])
    return status, dict(sent[0]["headers"]), body


latin1 = st.text(alphabet=st.characters(max_codepoint=255), max_size=60)


@settings(max_examples=300, deadline=None)
@given(
    suffix=st.one_of(
        st.text(max_size=40), st.from_regex(rf"{HASH}(\.[A-Za-z0-9]{{0,12}})?", fullmatch=True)
    )
)
def test_any_path_is_answered_without_raising(tmp_path_factory, suffix):
    app = build_app(tmp_path_factory.mktemp("store"))
    status, _, body = call(app, "/media/" + suffix, [])
    if media_key_from_path("/media/" + suffix) == HASH:
        assert (status, body) == (200, BODY)
    else:
        assert status == 404  # malformed, unknown, or an original this resolver lacks


def date_near(seconds: int):
    """HTTP-dates around ``seconds`` in RFC 9110's three forms, or anything at all."""
    offsets = st.integers(-2, 2).map(lambda d: seconds + d)
    imf = offsets.map(lambda t: formatdate(t, usegmt=True))
    asctime = offsets.map(lambda t: time.strftime("%a %b %e %H:%M:%S %Y", time.gmtime(t)))
    return st.one_of(st.none(), imf, asctime, latin1)


def sometimes(strategy):
    """``strategy`` one time in four, else None."""
    return st.integers(0, 3).flatmap(lambda i: strategy if i == 0 else st.none())


etags = st.one_of(
    st.none(), st.sampled_from([ETAG, f"W/{ETAG}", '"other"', "*", f'"other", {ETAG}']), latin1
)


@settings(max_examples=500, deadline=None)
@given(
    range_header=st.one_of(
        st.none(), st.sampled_from(["bytes=10-19", "bytes=-5", f"bytes={len(BODY)}-"]), latin1
    ),
    if_range=sometimes(st.one_of(etags, date_near(int(UPLOADED)))),
    # Mostly absent: a failing one answers 412 and hides what the other headers do.
    if_match=sometimes(etags),
    if_none_match=etags,
    if_unmodified_since=sometimes(date_near(int(UPLOADED))),
    if_modified_since=date_near(int(UPLOADED)),
    method=st.sampled_from(["GET", "HEAD"]),
)
def test_range_and_conditional_statuses_agree_with_the_parsers(
    tmp_path_factory,
    range_header,
    if_range,
    if_match,
    if_none_match,
    if_unmodified_since,
    if_modified_since,
    method,
):
    app = build_app(tmp_path_factory.mktemp("store"))
    asked = {
        b"range": range_header,
        b"if-range": if_range,
        b"if-match": if_match,
        b"if-none-match": if_none_match,
        b"if-unmodified-since": if_unmodified_since,
        b"if-modified-since": if_modified_since,
    }
    headers = [(k, v.encode("latin-1")) for k, v in asked.items() if v is not None]
    status, response_headers, body = call(app, f"/media/{HASH}", headers, method)
    event(f"status {status}")
    if status == 412:
        assert body == (b"" if method == "HEAD" else b'{"error": "precondition failed"}')
    elif status != 416:  # every answer about the object carries both validators
        assert response_headers[b"etag"] == ETAG.encode()
        assert response_headers[b"last-modified"] == LAST_MODIFIED.encode()
    verdict = precondition(
        ETAG.encode(),
        int(UPLOADED),
        if_match=if_match,
        if_unmodified_since=if_unmodified_since,
        if_none_match=if_none_match,
        if_modified_since=if_modified_since,
    )
    if verdict == PRECONDITION_FAILED:
        assert status == 412
        return
    if verdict == NOT_MODIFIED:
        assert (status, body) == (304, b"")
        return
    wanted = None
    if range_header is not None and if_range_holds(if_range, ETAG.encode(), int(UPLOADED)):
        wanted = parse_range(range_header, len(BODY))
    whole = b"" if method == "HEAD" else BODY
    if wanted is None:
        assert (status, body) == (200, whole)
    elif wanted == UNSATISFIABLE:
        assert status == 416
        assert response_headers[b"content-range"] == b"bytes */%d" % len(BODY)
    else:
        start, end = wanted
        part = b"" if method == "HEAD" else BODY[start : end + 1]
        assert (status, body) == (206, part)


def test_the_rfc_cases_by_name(tmp_path):
    """The rules the property above checks against the parsers, spelled out once."""
    app = build_app(tmp_path)
    before = formatdate(int(UPLOADED) - 1, usegmt=True)

    def status(**headers: str) -> int:
        pairs = [(k.replace("_", "-").encode(), v.encode()) for k, v in headers.items()]
        return call(app, f"/media/{HASH}", pairs)[0]

    assert status(if_match='"other"') == 412
    assert status(if_match=ETAG) == 200
    assert status(if_unmodified_since=before) == 412
    assert status(if_unmodified_since=before, if_match=ETAG) == 200
    assert status(if_modified_since=LAST_MODIFIED) == 304
    assert status(if_modified_since=LAST_MODIFIED, if_none_match='"other"') == 200
    assert status(if_modified_since=before) == 200
    assert status(range="bytes=0-9", if_range=LAST_MODIFIED) == 206
    assert status(range="bytes=0-9", if_range=before) == 200
    assert status(range="bytes=0-9", if_range=f"W/{ETAG}") == 200
    _, headers, _ = call(app, f"/media/{HASH}", [(b"if-none-match", ETAG.encode())])
    assert (headers[b"etag"], headers[b"last-modified"]) == (ETAG.encode(), LAST_MODIFIED.encode())


def test_no_last_modified_and_no_date_conditions_when_the_upload_time_is_unknown(tmp_path):
    app = build_app(tmp_path)
    unknown = MediaObject(*[getattr(OBJ, f) for f in ("media_hash", "key", "content_type",
                            "size", "sha256", "expires_at", "filename")])  # fmt: skip
    app.service.resolver = lambda key: unknown if key == HASH else None
    future = formatdate(time.time() + 3600, usegmt=True)
    status, headers, body = call(app, f"/media/{HASH}", [(b"if-modified-since", future.encode())])
    assert (status, body) == (200, BODY)
    assert b"last-modified" not in headers
    range_by_date = [(b"range", b"bytes=0-9"), (b"if-range", LAST_MODIFIED.encode())]
    assert call(app, f"/media/{HASH}", range_by_date)[0] == 200


def hangs_up_after(chunks: int):
    """A client that reads ``chunks`` body messages, then closes its socket; and the
    ``send`` of a server that says nothing when it drops what comes after."""
    written: list[bytes] = []
    closed = asyncio.Event()

    async def send(message):
        if closed.is_set():
            return  # uvicorn, after a hang-up
        if message["type"] == "http.response.body":
            written.append(message["body"])
            if len(written) == chunks:
                closed.set()

    async def client():
        yield {"type": "http.request", "body": b"", "more_body": False}
        await closed.wait()
        yield {"type": "http.disconnect"}

    return send, client, written


def test_a_streamed_download_cut_by_the_client_is_logged_as_cut(tmp_path, caplog):
    app = build_app(tmp_path, CACHE_MAX_OBJECT_BYTES=100, STREAM_CHUNK_BYTES=256)
    send, client, written = hangs_up_after(3)
    STATS.take()
    with caplog.at_level(logging.INFO, logger="mediacache.serve"):
        call(app, f"/media/{HASH}", [], send=send, client=client)
    assert written == [BODY[:256], BODY[256:512], BODY[512:768]]
    (line,) = [r for r in caplog.records if r.getMessage().startswith("[MEDIA CACHE]")]
    assert " status=200 bytes=768 cut duration=" in line.getMessage()
    assert (line.bytes, line.cut) == (768, True)
    taken = STATS.take()
    assert taken.events == {"cut": 1}
    assert taken.bytes_served == 768


def test_a_whole_download_is_not_cut(tmp_path, caplog):
    app = build_app(tmp_path, CACHE_MAX_OBJECT_BYTES=100, STREAM_CHUNK_BYTES=256)
    with caplog.at_level(logging.INFO, logger="mediacache.serve"):
        status, _, body = call(app, f"/media/{HASH}", [])
    assert (status, body) == (200, BODY)
    (line,) = [r for r in caplog.records if r.getMessage().startswith("[MEDIA CACHE]")]
    assert f" status=200 bytes={len(BODY)} duration=" in line.getMessage()
    assert not hasattr(line, "cut")


@pytest.mark.parametrize("cap", [100, 1 << 20])  # streamed, and sent whole from L1
def test_a_server_that_raises_on_a_hang_up_is_heard(tmp_path, caplog, cap):
    """The ASGI spec lets ``send`` raise an OSError subclass once the client has gone."""
    app = build_app(tmp_path, CACHE_MAX_OBJECT_BYTES=cap, STREAM_CHUNK_BYTES=256)
    call(app, f"/media/{HASH}", [])  # in L1 when it fits
    caplog.clear()

    async def send(message):
        if message["type"] == "http.response.body" and message["body"]:
            raise ConnectionResetError("client gone")

    with caplog.at_level(logging.INFO, logger="mediacache.serve"):
        call(app, f"/media/{HASH}", [], send=send)
    (line,) = [r for r in caplog.records if r.getMessage().startswith("[MEDIA CACHE]")]
    assert " status=200 bytes=0 cut duration=" in line.getMessage()
