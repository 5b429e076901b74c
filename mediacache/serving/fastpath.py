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

Production names it as uvicorn's protocol class (``scripts/serve.sh``)::

    uvicorn config.asgi:application --loop uvloop --http mediacache.fastpath:MediaHttpProtocol

plain ``--http httptools`` serves the same answers without the shortcut, as does
``MEDIACACHE["FAST_PATH"] = False`` (for ASGI middleware that must see every request).

The shortcut leans on uvicorn internals, all listed in ``UVICORN_NAMES``.
``tests/unit/test_contracts.py`` checks them against the installed uvicorn; and
at a process's first request, if uvicorn's version is not in
``SUPPORTED_UVICORN`` or a listed name is missing, the shortcut switches itself
off with one warning and this class behaves as the stock protocol.
"""

from __future__ import annotations

import logging
import time
from enum import Enum
from typing import Any, Final, Literal

import uvicorn
from uvicorn.protocols import utils as uvicorn_utils
from uvicorn.protocols.http import httptools_impl
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from mediacache.serving.app import MediaApp
from mediacache.serving.conditional import CONDITION_HEADERS

logger = logging.getLogger(__name__)

# uvicorn minor versions whose internals were checked against UVICORN_NAMES.
SUPPORTED_UVICORN = ("0.54",)
UVICORN_VERSION: str = uvicorn.__version__

# Every uvicorn name the shortcut uses beyond the documented ``--http`` class hook, as
# ``root.attribute[.attribute]``. Roots: the modules ``httptools_impl`` and ``utils``,
# the class ``HttpToolsProtocol``, ``protocol`` (a connection once a request's headers
# are parsed) and ``cycle`` (its current ``RequestResponseCycle``).
UVICORN_NAMES = (
    "httptools_impl.STATUS_LINE",
    "httptools_impl.RequestResponseCycle",
    "utils.get_client_addr",
    # parser callbacks overridden here, and the hook that ends a response
    "HttpToolsProtocol.on_message_begin",
    "HttpToolsProtocol.on_url",
    "HttpToolsProtocol.on_header",
    "HttpToolsProtocol.on_headers_complete",
    "HttpToolsProtocol.on_body",
    "HttpToolsProtocol.on_message_complete",
    "HttpToolsProtocol.on_response_complete",
    # per-connection and per-request state
    "protocol.app",
    "protocol.parser.get_method",
    "protocol.parser.get_http_version",
    "protocol.parser.should_keep_alive",
    "protocol.url",
    "protocol.headers",
    "protocol.scope",
    "protocol.cycle",
    "protocol.pipeline",
    "protocol.root_path",
    "protocol.flow.write_paused",
    "protocol.transport",
    # replaced by uvicorn with a new list when the date changes (_server_lines relies on it)
    "protocol.server_state.default_headers",
    "protocol.access_log",
    "protocol.access_logger",
    "cycle.response_complete",
)

# Looked up, not imported: a moved name turns the shortcut off instead of failing the import.
_STATUS_LINE: dict[int, bytes] = getattr(httptools_impl, "STATUS_LINE", {})
_STATUS_200 = _STATUS_LINE.get(200, b"")
_client_addr: Any = getattr(uvicorn_utils, "get_client_addr", None)


def _init_assigns(cls: type, name: str) -> bool:
    """Whether ``cls.__init__`` sets ``name``: how an instance attribute is checked
    without an instance (a connection's first request has no cycle yet)."""
    code = getattr(vars(cls).get("__init__"), "__code__", None)
    return code is not None and name in code.co_names


def missing_uvicorn_names(protocol: HttpToolsProtocol) -> list[str]:
    """The entries of ``UVICORN_NAMES`` that uvicorn or ``protocol`` lack."""
    cycle_class = getattr(httptools_impl, "RequestResponseCycle", None)
    cycle = getattr(protocol, "cycle", None)
    roots: dict[str, object] = {
        "httptools_impl": httptools_impl,
        "utils": uvicorn_utils,
        "HttpToolsProtocol": HttpToolsProtocol,
        "protocol": protocol,
        "cycle": cycle if cycle is not None else cycle_class,
    }
    missing: list[str] = []
    for dotted in UVICORN_NAMES:
        root, *names = dotted.split(".")
        obj = roots[root]
        for name in names:
            if obj is None or not (
                hasattr(obj, name)
                or (obj is cycle_class and isinstance(obj, type) and _init_assigns(obj, name))
            ):
                missing.append(dotted)
                break
            obj = getattr(obj, name, None)
    return missing


def uvicorn_problems(protocol: HttpToolsProtocol) -> list[str]:
    """Why the shortcut cannot run on this uvicorn; empty when it can."""
    problems: list[str] = []
    if ".".join(UVICORN_VERSION.split(".")[:2]) not in SUPPORTED_UVICORN:
        problems.append(f"uvicorn {UVICORN_VERSION} is not a supported version {SUPPORTED_UVICORN}")
    missing = missing_uvicorn_names(protocol)
    if missing:
        problems.append(f"uvicorn {UVICORN_VERSION} lacks {', '.join(missing)}")
    return problems


_shortcut_on: bool | None = None  # None: this process has not checked uvicorn yet


def shortcut_on(protocol: HttpToolsProtocol) -> bool:
    """Checked once per process, at its first request (when every name is visible)."""
    global _shortcut_on
    if _shortcut_on is None:
        problems = uvicorn_problems(protocol)
        _shortcut_on = not problems
        if problems:
            logger.warning(
                "L1-hit shortcut off, every request takes uvicorn's stock path: %s",
                "; ".join(problems),
            )
    return _shortcut_on


# Request headers that need the full path: ranges and every condition the app reads
# (If-Match, If-None-Match, If-Modified-Since, If-Unmodified-Since, If-Range), bodies, upgrades.
_NEEDS_FULL_PATH = CONDITION_HEADERS | {
    b"expect",
    b"upgrade",
    b"content-length",
    b"transfer-encoding",
}
_HIT_TAIL = b"x-cache: HIT\r\ncache-control: %s\r\n\r\n"


class _Shortcut(Enum):
    UNKNOWN = "not looked up yet"
    OFF = "no shortcut possible"


# What a connection learnt about its app: not looked up yet, or no shortcut possible.
_UNKNOWN: Final = _Shortcut.UNKNOWN
_NO_SHORTCUT: Final = _Shortcut.OFF


def media_app_of(app: object) -> tuple[bytes, MediaApp] | Literal[_Shortcut.OFF] | None:
    """(prefix, media app) of the MediaRouter inside the middleware wrapping it
    (uvicorn's, and any that keeps its inner app as ``.app``, such as Sentry's or
    OpenTelemetry's: those do not see the hits answered here); ``_NO_SHORTCUT``
    when there is none, its L1 is off or ``FAST_PATH`` is False; None: not started
    yet. Called once per connection."""
    from mediacache.serving.router import MediaRouter

    for _ in range(8):
        if isinstance(app, MediaRouter):
            if not app.engine.settings.FAST_PATH:
                return _NO_SHORTCUT
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
    _media: tuple[bytes, MediaApp] | _Shortcut = _UNKNOWN

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
            if not shortcut_on(self):
                self._media = _NO_SHORTCUT
                return False
            router = media_app_of(self.app)  # once per connection, after start-up
            if router is None:
                return False
            self._media = router
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
        media_hash, entry, cache_control = found
        head = b"".join(
            (
                _STATUS_200,
                _server_lines(self.server_state.default_headers),
                entry.wire,
                _HIT_TAIL % cache_control,
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
                _client_addr(self.scope),
                method.decode("ascii"),
                self.url.decode("latin-1"),
                "1.1",
                200,
            )
        self.on_response_complete()
        return True
