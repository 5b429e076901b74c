"""The ASGI app behind ``GET/HEAD /media/{hash}``: the hot path.

Deliberately not a Django view: a hit is one dict lookup (or one Redis GET) and
two ``send`` calls with headers built when the object entered the cache. Under
``mediacache.serving.fastpath`` a plain L1 hit does not even get here: the server's
protocol answers it through :meth:`MediaApp.l1_entry`.
Query strings are never read (Evolution appends ``?timestamp=…``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import TypeAlias

from mediacache.core.asgi_types import Receive, Scope, Send
from mediacache.core.counters import ERROR as OUTCOME_ERROR
from mediacache.core.counters import EXPIRED, HIT_L1, HIT_REDIS, MISS, NOT_FOUND, STATS
from mediacache.core.hashes import media_key_from_path
from mediacache.core.headers import (
    X_CACHE_HIT,
    X_CACHE_MISS,
    CacheControl,
    entity_headers,
    etag_for,
    is_immutable,
    last_modified,
    validator_headers,
)
from mediacache.core.objects import CachedMedia, seconds_left
from mediacache.serving.clients import TrustedProxies
from mediacache.serving.conditional import (
    CONDITION_HEADERS,
    NOT_MODIFIED,
    PRECONDITION_FAILED,
    UNSATISFIABLE,
    ParsedRange,
    if_range_holds,
    parse_range,
    precondition,
)
from mediacache.serving.ratelimit import LookupRation, NotFoundLimiter
from mediacache.tiers.lookup import MediaService
from mediacache.tiers.results import Lookup, NotFound, Unavailable

logger = logging.getLogger("mediacache.serve")

Headers: TypeAlias = list[tuple[bytes, bytes]]
# (status, body bytes handed to the server, whether the client hung up before the end)
Served: TypeAlias = tuple[int, int, bool]

_JSON = (b"content-type", b"application/json")
_NO_STORE = (b"cache-control", b"no-store")
_NOSNIFF = (b"x-content-type-options", b"nosniff")
_NOT_FOUND_BODY = b'{"error": "not found"}'
_UNAVAILABLE_BODY = b'{"error": "storage temporarily unavailable"}'
_METHOD_BODY = b'{"error": "method not allowed"}'
_TOO_MANY_BODY = b'{"error": "too many requests for unknown links"}'
_PRECONDITION_BODY = b'{"error": "precondition failed"}'
_HIT_OUTCOMES = {"l1": HIT_L1, "redis": HIT_REDIS}


def _log_served(
    media_hash: str, found: Lookup, status: int, sent: int, elapsed: float, cut: bool = False
) -> None:
    """One line per answer: ``[MEDIA CACHE] HIT <hash> tier=l1 …``, fields also as extras.

    A download the client hung up on says ``cut`` after the bytes really handed to the
    server (extra ``cut``: true), so it is not mistaken for a whole one.
    """
    tag = "HIT" if found.hit else "MISS"
    duration_ms = round(elapsed * 1000, 2)
    extra: dict[str, object] = {
        "hash": media_hash,
        "cache": tag,
        "tier": found.tier,
        "status": status,
        "bytes": sent,
        "duration_ms": duration_ms,
    }
    if cut:
        extra["cut"] = True
    logger.info(
        _SERVED_CUT if cut else _SERVED,
        tag,
        media_hash,
        found.tier,
        status,
        sent,
        duration_ms,
        extra=extra,
    )


_SERVED = "[MEDIA CACHE] %s %s tier=%s status=%d bytes=%d duration=%.2fms"
_SERVED_CUT = "[MEDIA CACHE] %s %s tier=%s status=%d bytes=%d cut duration=%.2fms"


def _error_headers(body: bytes, *extra: tuple[bytes, bytes]) -> Headers:
    return [_JSON, _NO_STORE, _NOSNIFF, (b"content-length", str(len(body)).encode()), *extra]


class MediaApp:
    def __init__(
        self,
        service: MediaService,
        *,
        max_age: int,
        retry_after: int,
        edge_max_age: int | None = None,
    ) -> None:
        self.service = service
        self.max_age = max_age
        if edge_max_age is None:
            edge_max_age = service.settings.EDGE_MAX_AGE
        self.cache_control = CacheControl(max_age, edge_max_age)
        self.log_hits = service.settings.LOG_HITS
        self._not_found = _error_headers(_NOT_FOUND_BODY)
        self._unavailable = _error_headers(
            _UNAVAILABLE_BODY, (b"retry-after", str(retry_after).encode())
        )
        self._not_allowed = _error_headers(_METHOD_BODY, (b"allow", b"GET, HEAD"))
        self._precondition_failed = _error_headers(_PRECONDITION_BODY)
        settings = service.settings
        self.limiter = NotFoundLimiter(settings.NOT_FOUND_LIMIT, settings.NOT_FOUND_WINDOW)
        try:
            self.clients = TrustedProxies(settings.TRUSTED_PROXIES)
            rate = settings.LIMITED_LOOKUPS_PER_SECOND
            self.ration = LookupRation(rate, burst=max(1, int(rate)))
        except ValueError as exc:
            from django.core.exceptions import ImproperlyConfigured

            raise ImproperlyConfigured(str(exc)) from exc

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope["method"]
        if method != "GET" and method != "HEAD":
            await _respond(send, 405, self._not_allowed, _METHOD_BODY, method)
            return
        started = time.perf_counter()
        media_hash = media_key_from_path(scope["path"])  # "hash" or "hash/original"
        # An L1 hit is decided by one L1 read, before any per-client work. Past L1 the
        # client (behind trusted proxies) is derived for the limiter: a limited client
        # gets 429 where it would get 404, and a link that exists is always answered
        # (mediacache.serving.ratelimit).
        client: str | None = None
        limited = 0
        outcome = NOT_FOUND
        if media_hash is not None:
            try:
                found = self.service.from_l1(media_hash)
                if found is None:
                    if self.limiter.enabled:
                        client = self.clients.client_of(scope)
                        limited = self.limiter.retry_after(client)
                    found = await self._past_l1(media_hash, client, limited)
            except NotFound as exc:
                if exc.reason == "expired":
                    outcome = EXPIRED
                    logger.info("[MEDIA] expired %s", media_hash)
            except Unavailable as exc:
                logger.warning("[MEDIA] 503 for %s: %s unavailable", media_hash, exc.reason)
                await _respond(send, 503, self._unavailable, _UNAVAILABLE_BODY, method)
                return STATS.record(OUTCOME_ERROR, time.perf_counter() - started, 0)
            else:
                return await self._answer(scope, receive, send, media_hash, found, started)
        if self.limiter.enabled and client is None:  # a malformed path, or remembered in L1
            client = self.clients.client_of(scope)
            limited = self.limiter.retry_after(client)
        if limited:
            headers = _error_headers(_TOO_MANY_BODY, (b"retry-after", b"%d" % limited))
            await _respond(send, 429, headers, _TOO_MANY_BODY, method)
            return STATS.record(outcome, time.perf_counter() - started, 0)
        if client is not None and self.limiter.record_not_found(client):
            logger.warning(
                "[MEDIA] client %s limited: %d 404s in %gs; unknown hashes get 429, "
                "links that exist are still served",
                client,
                self.limiter.limit,
                self.limiter.window,
                extra={"client": client},
            )
        await _respond(send, 404, self._not_found, _NOT_FOUND_BODY, method)
        STATS.record(outcome, time.perf_counter() - started, 0)

    async def _past_l1(self, media_hash: str, client: str | None, limited: int) -> Lookup:
        """Past L1. A limited client: the caches first (a hash they know is gone costs
        nothing), then its turn at the database (:class:`LookupRation`), never a refusal."""
        if not limited:
            return await self.service.past_l1(media_hash)
        try:
            return await self.service.past_l1(media_hash, cached_only=True)
        except NotFound as exc:
            if exc.reason != "not cached":
                raise
        await self.ration.turn(client or "-")
        return await self.service.lookup(media_hash)  # L1 may hold it by now

    async def _answer(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        media_hash: str,
        found: Lookup,
        started: float,
    ) -> None:
        outcome = _HIT_OUTCOMES[found.tier] if found.hit else MISS
        status, sent, cut = await self._serve(scope, receive, send, found)
        elapsed = time.perf_counter() - started
        STATS.record(outcome, elapsed, sent)
        if cut:
            STATS.count_event("cut")  # in the per-minute series, beside the bytes served
            _log_served(media_hash, found, status, sent, elapsed, cut=True)
        elif self.log_hits or not found.hit:
            _log_served(media_hash, found, status, sent, elapsed)

    def _cache_control(self, found: Lookup) -> tuple[bytes, bytes]:
        """Browsers and shared caches may keep it this long: never past the object's
        expiry (``mediacache.core.headers.CacheControl``)."""
        obj = found.obj
        value = self.cache_control.value(seconds_left(obj), is_immutable(obj.media_hash))
        return (b"cache-control", value)

    # -- the server's fast path (mediacache.serving.fastpath) ------------------------------

    def l1_entry(self, path: str) -> tuple[str, CachedMedia, bytes] | None:
        """(key, entry, Cache-Control value) when a plain GET/HEAD of ``path`` is a fresh
        hit in this process's L1, so it can be answered without the ASGI round trip; None:
        take the full path. One clock read serves both the expiry check and the max-age."""
        media_hash = media_key_from_path(path)
        if media_hash is None:
            return None
        entry = self.service.l1.get(media_hash)
        if not isinstance(entry, CachedMedia):
            return None
        left = seconds_left(entry.obj)
        if left <= 0:
            return None
        return media_hash, entry, self.cache_control.value(left, is_immutable(media_hash))

    def record_l1_hit(self, media_hash: str, entry: CachedMedia, sent: int, elapsed: float) -> None:
        STATS.record(HIT_L1, elapsed, sent)
        if self.log_hits:
            found = Lookup(entry.obj, entry, True, "l1")
            _log_served(media_hash, found, 200, sent, elapsed)

    async def _serve(self, scope: Scope, receive: Receive, send: Send, found: Lookup) -> Served:
        # A plain GET/HEAD costs one set lookup per request header; only a request with a
        # Range or a condition allocates anything (repeated headers join as one list).
        asked: dict[bytes, bytes] | None = None
        for name, value in scope["headers"]:
            if name in CONDITION_HEADERS:
                if asked is None:
                    asked = {}
                seen = asked.get(name)
                asked[name] = value if seen is None else b"%s, %s" % (seen, value)
        if asked is not None:
            return await self._serve_asked(scope["method"], receive, send, found, asked)
        entry = found.entry
        if entry is not None:  # the hot case, spelled out: one coroutine less than _whole
            x_cache = X_CACHE_HIT if found.hit else X_CACHE_MISS
            headers = [*entry.headers, x_cache, self._cache_control(found)]
            return await _respond(send, 200, headers, entry.body, scope["method"])
        return await self._whole(scope["method"], receive, send, found)

    async def _whole(self, method: str, receive: Receive, send: Send, found: Lookup) -> Served:
        """The 200 answer with the whole body: from the cached entry, or streamed."""
        x_cache = X_CACHE_HIT if found.hit else X_CACHE_MISS
        entry = found.entry
        if entry is not None:
            headers = [*entry.headers, x_cache, self._cache_control(found)]
            return await _respond(send, 200, headers, entry.body, method)
        obj = found.obj
        headers = [
            *entity_headers(obj),
            (b"content-length", str(obj.size).encode()),
            x_cache,
            self._cache_control(found),
        ]
        return await self._stream(receive, send, 200, headers, found, None, None, method)

    async def _serve_asked(
        self,
        method: str,
        receive: Receive,
        send: Send,
        found: Lookup,
        asked: dict[bytes, bytes],
    ) -> Served:
        """Preconditions (412, 304), then If-Range and Range (206, 416), per RFC 9110 §13.2.2."""

        def text(name: bytes) -> str | None:
            value = asked.get(name)
            return None if value is None else value.decode("latin-1")

        obj = found.obj
        entry = found.entry
        x_cache = X_CACHE_HIT if found.hit else X_CACHE_MISS
        etag = etag_for(obj) if entry is None else entry.etag
        modified = last_modified(obj)
        verdict = precondition(
            etag,
            modified,
            if_match=text(b"if-match"),
            if_unmodified_since=text(b"if-unmodified-since"),
            if_none_match=text(b"if-none-match"),
            if_modified_since=text(b"if-modified-since"),
        )
        if verdict == NOT_MODIFIED:
            validators = validator_headers(obj) if entry is None else entry.validators
            headers = [*validators, self._cache_control(found), x_cache]
            return await _respond(send, 304, headers, b"", "HEAD")
        if verdict == PRECONDITION_FAILED:
            return await _respond(send, 412, self._precondition_failed, _PRECONDITION_BODY, method)

        range_header = text(b"range")
        byte_range: ParsedRange = None
        if range_header is not None and if_range_holds(text(b"if-range"), etag, modified):
            byte_range = parse_range(range_header, obj.size)
        if byte_range is None:
            return await self._whole(method, receive, send, found)
        if byte_range == UNSATISFIABLE:
            headers = [
                (b"content-range", b"bytes */%d" % obj.size),
                (b"content-length", b"0"),
                x_cache,
                _NO_STORE,
            ]
            return await _respond(send, 416, headers, b"", method)

        start, end = byte_range
        headers = [
            *(entity_headers(obj) if entry is None else entry.entity),
            (b"content-range", b"bytes %d-%d/%d" % (start, end, obj.size)),
            (b"content-length", str(end - start + 1).encode()),
            x_cache,
            self._cache_control(found),
        ]
        if entry is not None:
            return await _respond(send, 206, headers, entry.body[start : end + 1], method)
        return await self._stream(receive, send, 206, headers, found, start, end, method)

    async def _stream(
        self,
        receive: Receive,
        send: Send,
        status: int,
        headers: Headers,
        found: Lookup,
        start: int | None,
        end: int | None,
        method: str,
    ) -> Served:
        """A large object from the store, chunk by chunk, until done or the client leaves.

        uvicorn drops what is sent after a hang-up without a word, so the hang-up is
        watched for on ``receive`` (``http.disconnect``); servers that raise ``OSError``
        from ``send`` instead (the ASGI spec's choice) are heard too. Either way the
        store read stops and the answer counts only the bytes handed over before it.
        """
        if method == "HEAD":
            return await _respond(send, status, headers, b"", method)
        try:
            chunks = await self.service.stream(found.obj, start, end)
        except NotFound:
            return await _respond(send, 404, self._not_found, _NOT_FOUND_BODY, method)
        except Unavailable:
            return await _respond(send, 503, self._unavailable, _UNAVAILABLE_BODY, method)
        gone = asyncio.ensure_future(_until_disconnect(receive))
        sent = 0
        try:
            await send({"type": "http.response.start", "status": status, "headers": headers})
            if gone.done():
                return status, 0, True
            async for chunk in chunks:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                if gone.done():  # gone before or while this chunk waited to be written
                    return status, sent, True
                sent += len(chunk)
            await send({"type": "http.response.body", "body": b""})
        except OSError:
            return status, sent, True
        except Exception as exc:  # the status is sent: all we can do is cut the response short
            logger.error("[MEDIA] stream of %s aborted: %r", found.obj.media_hash, exc)
            raise
        finally:
            gone.cancel()
            await _close(chunks)
        return status, sent, False


async def _until_disconnect(receive: Receive) -> None:
    """Returns once the client has gone. A ``receive`` that fails has no client left either."""
    try:
        while (await receive())["type"] != "http.disconnect":
            pass
    except Exception:  # ends the watch, and so the stream
        return


async def _close(chunks: AsyncIterator[bytes]) -> None:
    """Stop the store read behind an unfinished stream (an async generator's ``aclose``)."""
    aclose = getattr(chunks, "aclose", None)
    if aclose is not None:
        await aclose()


async def _respond(send: Send, status: int, headers: Headers, body: bytes, method: str) -> Served:
    """Send a whole response; the body counts as sent unless the server raised ``OSError``
    (a hang-up, for servers that report it: uvicorn keeps it quiet)."""
    if method == "HEAD":
        body = b""
    try:
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
    except OSError:
        return status, 0, True
    return status, len(body), False
