"""A minimal asyncio HTTP/1.1 GET client with keep-alive, for driving many requests.

httpx's AsyncClient costs ~2.3 ms of CPU per request here with 8 in flight (its
connection pool scans every connection per request, and httpcore re-tries a
failing ``import sniffio`` on each call when sniffio is absent), which made the
client, not the service, the bottleneck of the replay and the memory warm-up.
This one does only what the benchmark needs: GET, keep-alive, ``Content-Length``
bodies (every answer of ``/media/`` has one).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes


class Connection:
    """One keep-alive connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, host: str, port: int) -> Connection:
        reader, writer = await asyncio.open_connection(host, port, limit=1 << 20)
        return cls(reader, writer)

    async def get(self, path: str, host: str = "127.0.0.1") -> Response:
        self.writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode("latin-1"))
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        if "content-length" not in headers:
            raise RuntimeError(f"GET {path}: no Content-Length in the answer")
        body = await self.reader.readexactly(int(headers["content-length"]))
        return Response(status, headers, body)

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


class Pool:
    """``size`` connections opened up front; ``get`` borrows one per request."""

    def __init__(self, port: int, size: int, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = port
        self.size = size
        self._idle: asyncio.Queue[Connection] = asyncio.Queue()
        self.connections: list[Connection] = []

    async def __aenter__(self) -> Pool:
        self.connections = list(
            await asyncio.gather(*(Connection.open(self.host, self.port) for _ in range(self.size)))
        )
        for conn in self.connections:
            self._idle.put_nowait(conn)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.gather(*(conn.close() for conn in self.connections))

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[Connection]:
        conn = await self._idle.get()
        try:
            yield conn
        finally:
            self._idle.put_nowait(conn)

    async def get(self, path: str) -> Response:
        async with self.connection() as conn:
            return await conn.get(path, self.host)
