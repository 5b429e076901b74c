"""What Mediacache uses of its dependencies' internals, checked against the installed ones.

The fast path (mediacache.serving.fastpath) subclasses uvicorn's httptools protocol and
reads its private state; these tests drive a real ``HttpToolsProtocol`` (real
``uvicorn.Config``, real parser) over an in-memory transport, so a uvicorn release
that moves a name fails here with the name, and they show the shortcut switching
itself off on a uvicorn it does not know. The metrics' side is in test_metrics.py.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
from types import SimpleNamespace
from typing import Any

import pytest
import uvicorn
from uvicorn.protocols import utils as uvicorn_utils
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from mediacache.serving import fastpath
from mediacache.serving.fastpath import MediaHttpProtocol, missing_uvicorn_names

DATE = (b"date", b"Thu, 01 Jan 2026 00:00:00 GMT")


class Wire(asyncio.Transport):
    """The socket's end of a connection: keeps what the protocol writes."""

    def __init__(self) -> None:
        super().__init__()
        self.sent = bytearray()
        self.closed = False

    def write(self, data: Any) -> None:
        self.sent += data

    def writelines(self, list_of_data: Any) -> None:
        for data in list_of_data:
            self.sent += data

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        addresses = {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8000)}
        return addresses.get(name, default)


async def stock_app(scope, receive, send) -> None:
    """The ASGI path's answer to anything."""
    headers = [(b"content-type", b"text/plain"), (b"content-length", b"5")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"stock"})


class Connection:
    """One connection to a real uvicorn protocol, on a private event loop."""

    def __init__(self, protocol_class: type[HttpToolsProtocol]) -> None:
        self.loop = asyncio.new_event_loop()
        self.state = ServerState()
        self.state.default_headers = [DATE]
        config = uvicorn.Config(stock_app, lifespan="off", log_config=None, proxy_headers=False)
        self.protocol = protocol_class(config, self.state, {}, _loop=self.loop)
        self.wire = Wire()
        self.protocol.connection_made(self.wire)

    def send(self, raw: bytes) -> bytes:
        """Feed ``raw``, run until every answer is written; what was written."""
        start = len(self.wire.sent)
        self.protocol.data_received(raw)
        self.loop.run_until_complete(self._settle())
        return bytes(self.wire.sent[start:])

    async def _settle(self) -> None:
        for _ in range(1000):
            if not self.state.tasks:
                return
            await asyncio.sleep(0)
        raise AssertionError("the protocol's tasks did not finish")

    def close(self) -> None:
        self.protocol.connection_lost(None)
        self.loop.close()


def request(path: str, method: str = "GET") -> bytes:
    return f"{method} {path} HTTP/1.1\r\nHost: test\r\n\r\n".encode()


def answers_of(protocol_class: type[HttpToolsProtocol], raw: bytes) -> bytes:
    connection = Connection(protocol_class)
    try:
        return connection.send(raw)
    finally:
        connection.close()


class Probe(HttpToolsProtocol):
    """The stock protocol, asked at each request what the shortcut would use of it
    (where the shortcut runs: headers parsed, before uvicorn builds the cycle)."""

    def on_headers_complete(self) -> None:
        self.seen: list[list[str]] = getattr(self, "seen", [])
        self.seen.append(missing_uvicorn_names(self))
        super().on_headers_complete()


def test_the_installed_uvicorn_has_every_name_the_fast_path_uses():
    # Two pipelined requests: the first has no cycle yet, the second sees the first's.
    connection = Connection(Probe)
    try:
        answers = connection.send(request("/media/a") + request("/media/b"))
        seen = connection.protocol.seen
    finally:
        connection.close()
    assert answers.count(b"HTTP/1.1 200 OK\r\n") == 2
    moved = sorted({name for names in seen for name in names})
    assert not moved, (
        f"uvicorn {uvicorn.__version__} moved what mediacache.serving.fastpath uses: {moved}"
    )
    assert len(seen) == 2


def test_the_installed_uvicorn_is_a_supported_version():
    minor = ".".join(uvicorn.__version__.split(".")[:2])
    assert minor in fastpath.SUPPORTED_UVICORN, (
        f"uvicorn {uvicorn.__version__} is installed; the fast path is checked for "
        f"{fastpath.SUPPORTED_UVICORN}: run these tests and tests/test_fastpath.py on it, then "
        "add it to SUPPORTED_UVICORN (otherwise the shortcut switches itself off)"
    )


def test_the_stock_status_line_and_client_address_are_what_the_fast_path_writes():
    assert fastpath._STATUS_200 == b"HTTP/1.1 200 OK\r\n"
    assert fastpath._client_addr is uvicorn_utils.get_client_addr


def test_a_missing_name_is_reported_by_its_full_path():
    connection = Connection(Probe)
    try:
        connection.send(request("/media/a"))
        protocol = connection.protocol
        assert missing_uvicorn_names(protocol) == []
        del protocol.url
        del protocol.flow.write_paused
        assert missing_uvicorn_names(protocol) == ["protocol.url", "protocol.flow.write_paused"]
        protocol.flow.write_paused = False  # connection_lost reads it
    finally:
        connection.close()


class FakeMedia:
    """A media app whose L1 holds every path (what the shortcut would answer)."""

    def __init__(self) -> None:
        self.looked_up = 0
        self.hits = 0

    def l1_entry(self, path: str) -> tuple[str, SimpleNamespace, bytes]:
        wire = b"content-type: text/plain\r\ncontent-length: 4\r\n"
        return "h" * 22, SimpleNamespace(wire=wire, body=b"fast"), b"public, max-age=60"

    def record_l1_hit(self, *args: object) -> None:
        self.hits += 1


@pytest.fixture
def media(monkeypatch) -> FakeMedia:
    """A fresh process as far as the fast path knows, behind which every path is an L1 hit."""
    found = FakeMedia()

    def media_app_of(app: object) -> tuple[bytes, FakeMedia]:
        found.looked_up += 1
        return b"/media/", found

    monkeypatch.setattr(fastpath, "_shortcut_on", None)
    monkeypatch.setattr(fastpath, "media_app_of", media_app_of)
    return found


def warnings_of(caplog) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == fastpath.logger.name and r.levelno == logging.WARNING
    ]


def test_on_a_supported_uvicorn_the_shortcut_answers(media, caplog):
    answer = answers_of(MediaHttpProtocol, request("/media/x"))
    assert answer.startswith(b"HTTP/1.1 200 OK\r\ndate: ")
    assert b"\r\nx-cache: HIT\r\n" in answer
    assert answer.endswith(b"\r\n\r\nfast")
    assert media.hits == 1
    assert warnings_of(caplog) == []


BURST = request("/media/x") + request("/media/x", "HEAD") + request("/other")


def test_on_an_unsupported_uvicorn_it_is_the_stock_protocol_with_one_warning(
    media, monkeypatch, caplog
):
    monkeypatch.setattr(fastpath, "UVICORN_VERSION", "0.99.0")
    stock = answers_of(HttpToolsProtocol, BURST)
    assert stock.count(b"HTTP/1.1 200 OK") == 3
    for _ in range(3):  # three connections, one check
        assert answers_of(MediaHttpProtocol, BURST) == stock
    assert media.looked_up == 0
    assert media.hits == 0
    (warning,) = warnings_of(caplog)
    assert "uvicorn 0.99.0 is not a supported version" in warning


def test_a_missing_name_switches_the_shortcut_off_and_the_warning_names_it(
    media, monkeypatch, caplog
):
    monkeypatch.delattr(uvicorn_utils, "get_client_addr")
    stock = answers_of(HttpToolsProtocol, BURST)
    assert answers_of(MediaHttpProtocol, BURST) == stock
    assert answers_of(MediaHttpProtocol, BURST) == stock
    assert media.hits == 0
    (warning,) = warnings_of(caplog)
    assert "lacks utils.get_client_addr" in warning


@pytest.mark.parametrize(
    ("module", "names"),
    [
        (
            "prometheus_client",
            ["CONTENT_TYPE_LATEST", "REGISTRY", "CollectorRegistry", "Counter", "Gauge"],
        ),
        ("prometheus_client", ["generate_latest"]),
        ("prometheus_client.metrics_core", ["HistogramMetricFamily", "Metric"]),
        ("prometheus_client.multiprocess", ["MultiProcessCollector"]),
        ("prometheus_client.registry", ["Collector"]),
    ],
)
def test_the_installed_prometheus_client_has_every_name_the_metrics_use(module, names):
    """mediacache.observability.metrics uses only these, all public."""
    loaded = importlib.import_module(module)
    missing = [name for name in names if not hasattr(loaded, name)]
    assert not missing, f"prometheus-client lacks {module}.{missing}"
