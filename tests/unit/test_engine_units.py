"""Pure logic of the engine: hashes, paths, ranges, ETags, headers, the LRU, the codec."""

from __future__ import annotations

import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mediacache.core.hashes import hash_from_path, is_media_hash, new_media_hash
from mediacache.core.headers import build_cached, content_disposition, safe_filename
from mediacache.core.objects import MediaObject
from mediacache.serving.conditional import UNSATISFIABLE, etag_matches, parse_range
from mediacache.tiers import codec
from mediacache.tiers.lru import GONE, BytesLRU


def obj(**fields) -> MediaObject:
    values = dict(
        media_hash="h" * 22, key="chat/k.ogg", content_type="audio/ogg", size=3, sha256="ab" * 32
    )
    values.update(fields)
    return MediaObject(**values)


def test_new_hashes_are_urlsafe_128_bit_and_distinct():
    hashes = {new_media_hash() for _ in range(10_000)}
    assert len(hashes) == 10_000
    assert all(len(h) == 22 and is_media_hash(h) for h in hashes)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/media/AbCdEfGhIjKlMnOpQrStUv", "AbCdEfGhIjKlMnOpQrStUv"),
        ("/media/AbCdEfGhIjKlMnOpQrStUv.ogg", "AbCdEfGhIjKlMnOpQrStUv"),
        ("/media/legacy_hash-0123456789abcdef", "legacy_hash-0123456789abcdef"),
        ("/media/AbCdEfGhIjKlMnOpQrStUv/", None),
        ("/media/AbCdEfGhIjKlMnOpQrStUv.", None),
        ("/media/AbCdEfGhIjKlMnOpQrStUv.tar.gz", None),
        ("/media/short", None),
        ("/media/" + "a" * 33, None),
        ("/media/../../etc/passwd", None),
        ("/media/AbCdEfGhIjKlMnOp%2FrStUv", None),
        ("/other/AbCdEfGhIjKlMnOpQrStUv", None),
    ],
)
def test_hash_from_path(path, expected):
    assert hash_from_path(path) == expected


@given(st.text(max_size=80))
def test_hash_from_path_never_raises_and_only_accepts_safe_hashes(path):
    found = hash_from_path("/media/" + path)
    assert found is None or is_media_hash(found)


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        ("bytes=0-9", 100, (0, 9)),
        ("bytes=90-200", 100, (90, 99)),
        ("bytes=50-", 100, (50, 99)),
        ("bytes=-10", 100, (90, 99)),
        ("bytes=-1000", 100, (0, 99)),
        ("bytes=100-", 100, UNSATISFIABLE),
        ("bytes=-0", 100, UNSATISFIABLE),
        ("bytes=0-", 0, UNSATISFIABLE),
        ("bytes=9-0", 100, None),
        ("bytes=0-1,5-6", 100, None),
        ("items=0-1", 100, None),
        ("bytes=abc", 100, None),
        ("bytes=", 100, None),
        ("bytes=-", 100, None),
        ("bytes=²-3", 100, None),
        ("", 100, None),
        (None, 100, None),
    ],
)
def test_parse_range(header, size, expected):
    assert parse_range(header, size) == expected


@given(st.text(max_size=60), st.integers(min_value=0, max_value=10**12))
def test_parse_range_is_total_and_in_bounds(header, size):
    result = parse_range(header, size)
    if isinstance(result, tuple):
        start, end = result
        assert 0 <= start <= end < size


@given(st.integers(0, 10**6), st.integers(0, 10**6), st.integers(1, 10**6))
def test_parse_range_well_formed(first, last, size):
    result = parse_range(f"bytes={first}-{last}", size)
    if last < first:
        assert result is None
    elif first >= size:
        assert result == UNSATISFIABLE
    else:
        assert result == (first, min(last, size - 1))


@pytest.mark.parametrize(
    ("header", "matches"),
    [('"abc"', True), ('W/"abc"', True), ('"x", "abc"', True), ("*", True), ('"abcd"', False),
     ("abc", False), ("", False), (None, False)],
)  # fmt: skip
def test_etag_matches(header, matches):
    assert etag_matches(header, b'"abc"') is matches


@given(st.text(max_size=200))
def test_etag_matches_never_raises(header):
    etag_matches(header, b'"abc"')


@given(st.text(max_size=300))
def test_safe_filename_has_no_path_or_control_characters(name):
    safe = safe_filename(name, "fallback")
    assert safe
    assert not any(c in safe for c in '/\\"\x00\r\n;')
    assert len(safe) <= 150
    content_disposition(obj(filename=name)).encode("ascii")  # header-safe


def test_disposition_and_type_for_active_content():
    for content_type in ("text/html", "image/svg+xml", "application/xhtml+xml"):
        entry = build_cached(obj(content_type=content_type, filename="x.html"), b"<b>")
        headers = dict(entry.headers)
        assert headers[b"content-type"] == b"application/octet-stream"
        assert headers[b"content-disposition"].startswith(b"attachment")
    audio = dict(build_cached(obj(filename="nota de voz.ogg"), b"abc").headers)
    assert audio[b"content-disposition"] == b'inline; filename="nota de voz.ogg"'
    unicode_name = content_disposition(obj(filename="áudio.ogg"))
    assert "filename*=UTF-8''%C3%A1udio.ogg" in unicode_name


def test_lru_is_bounded_in_bytes_and_evicts_oldest():
    lru = BytesLRU(max_bytes=3100, ttl=60, max_item_bytes=2000)
    for name in "abc":
        lru.put(name, build_cached(obj(media_hash=name * 22), b"x" * 500))
    assert lru.used_bytes <= 3100
    lru.get("a")  # a is now the most recent
    lru.put("d", build_cached(obj(media_hash="d" * 22), b"x" * 500))
    assert lru.get("b") is None
    assert lru.get("a") is not None
    lru.put("big", build_cached(obj(), b"x" * 5000))  # over the per-item cap
    assert lru.get("big") is None


def test_lru_entries_age_out_and_remember_gone(monkeypatch):
    lru = BytesLRU(max_bytes=10_000, ttl=60)
    lru.put("a", build_cached(obj(), b"abc"), ttl=5)
    lru.put_gone("z", ttl=5)
    assert lru.get("z") is GONE
    now = time.monotonic()
    monkeypatch.setattr("mediacache.tiers.lru.time.monotonic", lambda: now + 6)
    assert lru.get("a") is None
    assert lru.get("z") is None
    assert lru.used_bytes == 0


def test_codec_round_trip_and_corruption():
    original = obj(expires_at=1_800_000_000.5, filename="ção.ogg")
    head, tail = codec.encode(original, b"\x00body\xff")
    assert tail is None
    decoded, body = codec.decode(original.media_hash, head)
    assert decoded == original
    assert body == b"\x00body\xff"
    assert len(head) - len(b"\x00body\xff") < 200  # metadata stays small
    for bad in (b"", b"MC1", b"XX" + head, head[:10], head[:-1]):
        with pytest.raises(codec.CorruptEntry):
            codec.decode("h", bad)


def test_codec_carries_the_upload_time_and_reads_the_previous_versions_values():
    original = obj(uploaded_at=1_732_500_000.25)
    decoded, _ = codec.decode(original.media_hash, codec.encode(original, b"abc")[0])
    assert decoded.uploaded_at == 1_732_500_000.25
    # What the previous version wrote: the same list without the upload time.
    meta = b'["chat/k.ogg","audio/ogg",3,"ab",null,"v.ogg",3]'
    old = codec.MAGIC + codec._LEN.pack(len(meta)) + meta + b"abc"
    decoded, body = codec.decode("h" * 22, old)
    assert (decoded.uploaded_at, decoded.filename, body) == (None, "v.ogg", b"abc")
    later = meta[:-1] + b',1732500000,"a later field"]'
    later_value = codec.MAGIC + codec._LEN.pack(len(later)) + later + b"abc"
    assert codec.decode("h" * 22, later_value)[0].uploaded_at == 1_732_500_000
    for bad in (b'"yesterday"', b"true", b"[1]"):
        wrong = meta[:-1] + b"," + bad + b"]"
        with pytest.raises(codec.CorruptEntry):
            codec.decode("h", codec.MAGIC + codec._LEN.pack(len(wrong)) + wrong + b"abc")


def test_last_modified_is_the_upload_time_in_every_precomputed_header_list():
    entry = build_cached(obj(uploaded_at=784111777.9), b"abc")  # RFC 9110's sample date
    validators = [(b"etag", b'"' + b"ab" * 32 + b'"'),
                  (b"last-modified", b"Sun, 06 Nov 1994 08:49:37 GMT")]  # fmt: skip
    assert entry.validators == validators
    assert entry.etag == validators[0][1]
    for headers in (entry.entity, entry.headers):
        assert [pair for pair in headers if pair[0] in (b"etag", b"last-modified")] == validators
    assert b"\r\nlast-modified: Sun, 06 Nov 1994 08:49:37 GMT\r\n" in entry.wire
    unknown = build_cached(obj(), b"abc")
    assert unknown.validators == validators[:1]
    assert b"last-modified" not in unknown.wire


@pytest.mark.parametrize("size", [32_000, 50_000, 51_200, 80_000, 1_000_000])
def test_codec_splits_big_values_at_an_allocator_size_class(size):
    body = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    head, tail = codec.encode(obj(size=size), body)
    if tail is not None:
        assert codec.size_class_floor(len(head) + 16) == len(head) + 16
        with pytest.raises(codec.CorruptEntry):
            codec.decode("h", head)  # the tail was evicted: a miss, not a short body
    assert codec.decode("h", head, tail)[1] == body


@given(st.integers(1, 10**9))
def test_size_class_floor_is_a_class_at_most_n(n):
    floor = codec.size_class_floor(n)
    assert floor <= n
    if n > 4096:
        step = 1 << (floor.bit_length() - 3)
        assert floor % step == 0
        assert n - floor < step * 2


def test_lru_refuses_a_fill_that_started_before_an_invalidation():
    lru = BytesLRU(max_bytes=10_000, ttl=60)
    started = time.monotonic()
    lru.invalidate("a")  # a delete lands while the fill is in flight
    lru.put("a", build_cached(obj(), b"old"), since=started)
    assert lru.get("a") is None
    lru.put("a", build_cached(obj(), b"new"), since=time.monotonic())
    assert lru.get("a") is not None


@pytest.mark.parametrize("freeze", [True, False])
def test_a_started_worker_freezes_its_start_up_objects_out_of_the_collector(freeze):
    import asyncio
    import gc

    from mediacache.engine import Engine
    from mediacache.serving.router import MediaRouter

    router = MediaRouter(object(), Engine.from_django(GC_FREEZE=freeze, REDIS_URL=""))

    async def start_and_stop() -> int:
        router._start()
        frozen = gc.get_freeze_count()
        router._flusher.cancel()
        await asyncio.gather(router._flusher, return_exceptions=True)
        return frozen

    try:
        frozen = asyncio.run(start_and_stop())
    finally:
        gc.unfreeze()
    assert (frozen > 10_000) is freeze
