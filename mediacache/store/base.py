"""What every object store adapter offers, and the two ways a read can fail.

The serving path needs what Django's storage API lacks: byte ranges, streaming in
chunks, and a clear line between "the object is gone" (404) and "the store is
down" (503). All methods are blocking; the engine calls them from a thread pool.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO, Protocol


class ObjectMissing(Exception):
    """The store has no object under that key (deleted, or expired by a lifecycle rule)."""


class StoreUnavailable(Exception):
    """The store could not be asked: network, credentials, or a server error."""


class ObjectStore(Protocol):
    def read(self, key: str) -> bytes: ...

    def stream(
        self, key: str, start: int | None = None, end: int | None = None, chunk: int = 262144
    ) -> Iterator[bytes]: ...

    def delete(self, key: str) -> None: ...

    def write(self, key: str, fileobj: BinaryIO) -> None:
        """Store ``fileobj`` under ``key`` (keys are fresh uuids: nothing is overwritten)."""
        ...

    def check(self) -> None:
        """Raise StoreUnavailable unless the store can be used now (readiness probe)."""
        ...
