"""The ASGI app behind ``GET/HEAD /media/{hash}``: the hot path.

Deliberately not a Django view: a hit is one dict lookup (or one Redis GET) and
two ``send`` calls with headers built when the object entered the cache.
Query strings are never read (Evolution appends ``?timestamp=…``).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from .conditional import UNSATISFIABLE, etag_matches, parse_range
from .hashes import hash_from_path
from .headers import X_CACHE_HIT, X_CACHE_MISS, entity_headers, etag_for
from .service import Lookup, MediaService, NotFound, Unavailable, seconds_left

logger = logging.getLogger("mediacache.serve")

Scope = dict[str, Any]

_JSON = (b"content-type", b"application/json")
_NO_STORE = (b"cache-control", b"no-store")
_NOSNIFF = (b"x-content-type-options", b"nosniff")
_NOT_FOUND_BODY = b'{"error": "not found"}'
_UNAVAILABLE_BODY = b'{"error": "storage temporarily unavailable"}'
_METHOD_BODY = b'{"error": "method not allowed"}'


def _error_headers(body: bytes, *extra: tuple[bytes, bytes]) -> list[tuple[bytes, bytes]]:
    return [_JSON, _NO_STORE, _NOSNIFF, (b"content-length", str(len(body)).encode()), *extra]


class MediaApp:
    def __init__(self, service: MediaService, *, max_age: int, retry_after: int) -> None:
        self.service = service
        self.max_age = max_age
        self.log_hits = service.settings.LOG_HITS
        self._not_found = _error_headers(_NOT_FOUND_BODY)
        self._unavailable = _error_headers(
            _UNAVAILABLE_BODY, (b"retry-after", str(retry_after).encode())
        )
        self._not_allowed = _error_headers(_METHOD_BODY, (b"allow", b"GET, HEAD"))

    async def __call__(self, scope: Scope, receive, send) -> None:
        method = scope["method"]
        if method != "GET" and method != "HEAD":
            return await _respond(send, 405, self._not_allowed, _METHOD_BODY, method)
        media_hash = hash_from_path(scope["path"])
        if media_hash is None:
            return await _respond(send, 404, self._not_found, _NOT_FOUND_BODY, method)
        started = time.perf_counter()
        try:
            found = await self.service.lookup(media_hash)
        except NotFound as exc:
            if exc.reason == "expired":
                logger.info("[MEDIA] expired %s", media_hash)
            return await _respond(send, 404, self._not_found, _NOT_FOUND_BODY, method)
        except Unavailable as exc:
            logger.warning("[MEDIA] 503 for %s: %s unavailable", media_hash, exc.reason)
            return await _respond(send, 503, self._unavailable, _UNAVAILABLE_BODY, method)
        if found.hit:
            if self.log_hits:
                logger.info("[MEDIA CACHE] HIT %s tier=%s", media_hash, found.tier)
        else:
            logger.info(
                "[MEDIA CACHE] MISS %s size=%d fetched_in=%.1fms",
                media_hash,
                found.obj.size,
                (time.perf_counter() - started) * 1000,
            )
        await self._serve(scope, send, found)

    def _cache_control(self, found: Lookup) -> tuple[bytes, bytes]:
        max_age = int(max(0, min(self.max_age, seconds_left(found.obj))))
        return (b"cache-control", b"public, max-age=%d" % max_age)

    async def _serve(self, scope: Scope, send, found: Lookup) -> None:
        method = scope["method"]
        entry = found.entry
        x_cache = X_CACHE_HIT if found.hit else X_CACHE_MISS
        range_header = if_none_match = if_range = None
        for name, value in scope["headers"]:
            if name == b"range":
                range_header = value.decode("latin-1")
            elif name == b"if-none-match":
                if_none_match = value.decode("latin-1")
            elif name == b"if-range":
                if_range = value.decode("latin-1")

        obj = found.obj
        etag = etag_for(obj) if entry is None else entry.etag
        if if_none_match is not None and etag_matches(if_none_match, etag):
            headers = [(b"etag", etag), self._cache_control(found), x_cache]
            return await _respond(send, 304, headers, b"", "HEAD")

        byte_range = None
        if range_header is not None and (if_range is None or if_range.strip() == etag.decode()):
            byte_range = parse_range(range_header, obj.size)
        if byte_range == UNSATISFIABLE:
            headers = [
                (b"content-range", b"bytes */%d" % obj.size),
                (b"content-length", b"0"),
                x_cache,
                _NO_STORE,
            ]
            return await _respond(send, 416, headers, b"", method)

        if byte_range is None:
            if entry is not None:
                headers = [*entry.headers, x_cache, self._cache_control(found)]
                return await _respond(send, 200, headers, entry.body, method)
            headers = [
                *entity_headers(obj),
                (b"content-length", str(obj.size).encode()),
                x_cache,
                self._cache_control(found),
            ]
            return await self._stream(send, 200, headers, found, None, None, method)

        start, end = byte_range  # type: ignore[misc]
        headers = [
            *(entity_headers(obj) if entry is None else entry.entity),
            (b"content-range", b"bytes %d-%d/%d" % (start, end, obj.size)),
            (b"content-length", str(end - start + 1).encode()),
            x_cache,
            self._cache_control(found),
        ]
        if entry is not None:
            return await _respond(send, 206, headers, entry.body[start : end + 1], method)
        return await self._stream(send, 206, headers, found, start, end, method)

    async def _stream(self, send, status, headers, found: Lookup, start, end, method) -> None:
        if method == "HEAD":
            return await _respond(send, status, headers, b"", method)
        try:
            chunks = await self.service.stream(found.obj, start, end)
        except NotFound:
            return await _respond(send, 404, self._not_found, _NOT_FOUND_BODY, method)
        except Unavailable:
            return await _respond(send, 503, self._unavailable, _UNAVAILABLE_BODY, method)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        try:
            async for chunk in chunks:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except Exception as exc:  # the status is sent: all we can do is cut the response short
            logger.error("[MEDIA] stream of %s aborted: %r", found.obj.media_hash, exc)
            raise
        await send({"type": "http.response.body", "body": b""})


async def _respond(send, status: int, headers, body: bytes, method: str) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if method == "HEAD" else body})
