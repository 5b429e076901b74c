"""A recording double of the purge APIs of Cloudflare, Fastly, CloudFront and a Varnish
node, as a real HTTP server on loopback.

Every request is recorded (method, path, headers, body). The answers are the APIs'
success shapes -- Cloudflare ``{"success": true, ...}``, Fastly a JSON map of purge ids,
CloudFront ``201`` with the ``Invalidation`` XML boto3 parses, Varnish ``200`` -- unless
the test asks for ``fail_next`` error answers or holds requests (``hold``: they wait
until ``release()``, for "the delete does not wait for the edge").
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self

CLOUDFRONT_XML = """<?xml version="1.0" encoding="UTF-8"?>
<Invalidation xmlns="http://cloudfront.amazonaws.com/doc/2020-05-31/">
<Id>I{n}</Id><Status>InProgress</Status><CreateTime>2026-12-01T10:00:00Z</CreateTime>
<InvalidationBatch><Paths><Quantity>0</Quantity></Paths>
<CallerReference>ref</CallerReference></InvalidationBatch></Invalidation>"""


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> object:
        return json.loads(self.body)


@dataclass
class EdgeDouble:
    requests: list[Recorded] = field(default_factory=list)
    fail_next: int = 0  # answer this many requests with 500 (or 429 for Cloudflare)
    hold: bool = False
    confirm_purges: bool = True  # nginx: the tombstone's X-Edge-Purged on its 404
    _released: threading.Event = field(default_factory=threading.Event)
    _arrived: threading.Condition = field(default_factory=threading.Condition)

    def __enter__(self) -> Self:
        double = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _any(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                record = Recorded(
                    self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body
                )
                with double._arrived:
                    double.requests.append(record)
                    failing = double.fail_next > 0
                    if failing:
                        double.fail_next -= 1
                    double._arrived.notify_all()
                if double.hold:
                    double._released.wait(30)
                status, ctype, answer = double.answer(record, failing)
                self.send_response(status)
                self.send_header("content-type", ctype)
                self.send_header("content-length", str(len(answer)))
                if (
                    status == 404
                    and double.confirm_purges
                    and record.path.startswith("/.edge-purge/")
                ):
                    self.send_header("x-edge-purged", "1")
                self.end_headers()
                self.wfile.write(answer)

            do_POST = do_PURGE = do_GET = _any

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
        self.server.shutdown()
        self.server.server_close()

    def answer(self, record: Recorded, failing: bool) -> tuple[int, str, bytes]:
        if "/purge_cache" in record.path:  # Cloudflare
            if failing:
                body = {"success": False, "errors": [{"code": 10000, "message": "rate limited"}]}
                return 429, "application/json", json.dumps(body).encode()
            body = {"success": True, "errors": [], "messages": [], "result": {"id": "p1"}}
            return 200, "application/json", json.dumps(body).encode()
        if failing:
            return 500, "text/plain", b"edge error"
        if record.path.startswith("/.edge-purge/"):  # deploy/edge/nginx-edge.conf
            return 404, "text/html", b"<html>404 Not Found</html>"
        if "/invalidation" in record.path:  # CloudFront
            xml = CLOUDFRONT_XML.format(n=len(self.requests)).encode()
            return 201, "text/xml", xml
        if record.path.startswith("/service/"):  # Fastly
            keys = record.headers.get("surrogate-key", "").split()
            return 200, "application/json", json.dumps({k: "108-1" for k in keys}).encode()
        return 200, "text/plain", b"Invalidated"  # Varnish

    def release(self) -> None:
        self._released.set()

    def wait_for(self, n: int, timeout: float = 10) -> list[Recorded]:
        """The first ``n`` requests, once they have arrived."""
        with self._arrived:
            self._arrived.wait_for(lambda: len(self.requests) >= n, timeout)
            assert len(self.requests) >= n, self.requests
            return self.requests[:n]


@contextlib.contextmanager
def engine_purging(hook: Any) -> Iterator[Any]:
    """This process's engine purges through ``hook`` for the test (``Engine.edge`` is a
    cached property: set in the instance's dict, dropped after)."""
    from mediacache.engine import get_engine

    engine = get_engine()
    engine.__dict__["edge"] = hook
    try:
        yield hook
    finally:
        engine.__dict__.pop("edge", None)
