"""uvicorn's httptools protocol, with L1 hits of ``/media/`` answered from the parser callback.

Why: on an L1 hit Mediacache's own work is a dict lookup; most of a worker's CPU
goes to the server turning the request into a scope dict, a task, two ASGI
message dicts, header validation and two socket writes. For the one request
shape that dominates the traffic -- ``GET``/``HEAD /media/{hash}`` with no
``Range`` or conditional header, the object fresh in this process's L1 -- this
protocol writes the status line, uvicorn's own ``date``/``server`` headers, the
headers precomputed when the object entered L1 (``CachedMedia.wire``) and the
body in one ``writelines`` (one ``writev`` under uvloop), from the parser's
``on_headers_complete``. The bytes on the wire are those of the ASGI path
(``tests/test_fastpath.py`` compares them). Everything else -- misses, ranges,
304s, other paths, HTTP/1.0, ``Connection: close``, a request pipelined behind
one still running, a paused transport -- goes through uvicorn's normal path
unchanged. With access logging on, the shortcut writes uvicorn's line itself.

Use it with ``python -m mediacache.serve`` (``--http mediacache``); plain
``uvicorn --http httptools`` serves the same answers without the shortcut.
"""

from __future__ import annotations

import time
from typing import Any

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.protocols.utils import get_client_addr

from mediacache.serving.app import MediaApp

# Request headers that need the full path (ranges, revalidation, bodies, upgrades).
_NEEDS_FULL_PATH = frozenset(
    {
        b"range",
        b"if-range",
        b"if-none-match",
        b"if-modified-since",
        b"expect",
        b"upgrade",
        b"content-length",
        b"transfer-encoding",
    }
)
_STATUS_200 = STATUS_LINE[200]
_HIT_TAIL = b"x-cache: HIT\r\ncache-control: public, max-age=%d\r\n\r\n"


# What a connection learnt about its app: not looked up yet, or no shortcut possible.
_UNKNOWN: Any = object()
_NO_SHORTCUT: Any = object()


def media_app_of(app: Any) -> tuple[bytes, MediaApp] | Any:
    """(prefix, media app) of the MediaRouter inside uvicorn's middleware wrappers;
    ``_NO_SHORTCUT`` when there is none or its L1 is off; None: not started yet."""
    from mediacache.serving.router import MediaRouter

    for _ in range(8):
        if isinstance(app, MediaRouter):
            media = app.media_app
            if media is None:
                return None
            if media.service.l1.max_bytes <= 0:
                return _NO_SHORTCUT
            return (app.prefix.encode("ascii"), media)
        app = getattr(app, "app", None)
        if app is None:
            break
    return _NO_SHORTCUT


_server_lines_cache: tuple[object, bytes] = (None, b"")


def _server_lines(default_headers: list[tuple[bytes, bytes]]) -> bytes:
    """uvicorn's ``date``/``server`` lines, serialised once per list: the server swaps
    in a new list when the date changes (once a second)."""
    global _server_lines_cache
    cached_for, lines = _server_lines_cache
    if cached_for is not default_headers:
        lines = b"".join(b"%s: %s\r\n" % pair for pair in default_headers)
        _server_lines_cache = (default_headers, lines)
    return lines


class MediaHttpProtocol(HttpToolsProtocol):
    """``HttpToolsProtocol`` plus the L1-hit shortcut; see the module docstring."""

    _answered = False
    _media: Any = _UNKNOWN

    def on_message_begin(self) -> None:
        self._answered = False
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        if self._answer_from_l1():
            self._answered = True
            return
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self._answered:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if not self._answered:
            super().on_message_complete()

    def _answer_from_l1(self) -> bool:
        if self._media is _UNKNOWN:
            found = media_app_of(self.app)  # once per connection, after start-up
            if found is None:
                return False
            self._media = found
        if self._media is _NO_SHORTCUT:
            return False
        prefix, media = self._media
        if not self.url.startswith(prefix):
            return False
        method = self.parser.get_method()
        if method != b"GET" and method != b"HEAD":
            return False
        cycle = self.cycle
        if (cycle is not None and not cycle.response_complete) or self.pipeline:
            return False  # answers must leave in request order
        if self.root_path or self.flow.write_paused:
            return False
        if not self.parser.should_keep_alive() or self.parser.get_http_version() != "1.1":
            return False
        for name, _value in self.headers:
            if name in _NEEDS_FULL_PATH:
                return False
        path = self.url.split(b"?", 1)[0]
        if b"%" in path or b"#" in path:
            return False  # percent-decoding is the full path's job
        try:
            text = path.decode("ascii")
        except UnicodeDecodeError:
            return False
        started = time.perf_counter()
        found = media.l1_entry(text)
        if found is None or not found[1].wire:
            return False
        media_hash, entry, max_age = found
        head = b"".join(
            (
                _STATUS_200,
                _server_lines(self.server_state.default_headers),
                entry.wire,
                _HIT_TAIL % max_age,
            )
        )
        if method == b"HEAD":
            self.transport.write(head)
            sent = 0
        else:
            self.transport.writelines((head, entry.body))
            sent = len(entry.body)
        media.record_l1_hit(media_hash, entry, sent, time.perf_counter() - started)
        if self.access_log:  # uvicorn's own line, as its cycle would have logged it
            self.access_logger.info(
                '%s - "%s %s HTTP/%s" %d',
                get_client_addr(self.scope),
                method.decode("ascii"),
                self.url.decode("latin-1"),
                "1.1",
                200,
            )
        self.on_response_complete()
        return True
