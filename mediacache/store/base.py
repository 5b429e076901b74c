"""What every object store adapter offers, and the two ways a call can fail.

Django's storage API lacks what the engine needs: byte ranges, streaming in
chunks, listing with dates, bulk deletes, bucket lifecycle rules, and a clear line
between "the object is gone" (404) and "the store is down" (503). One adapter per
kind of storage offers all of it; everything (uploads, the serving path, purge,
the orphan sweeper, the lifecycle command) goes through it. Keys are the names a
``FileField`` holds: an adapter adds its storage's own ``location`` itself.
All methods block; the serving path calls them from a thread pool.
"""

from __future__ import annotations

import builtins
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, BinaryIO, Protocol

Chunks = Generator[bytes, None, None]
DEFAULT_CHUNK = 256 * 1024
# S3's DeleteObjects takes at most this many keys; list pages are as large.
MAX_BATCH = 1000


class ObjectMissing(Exception):
    """The store has no object under that key (deleted, or expired by a lifecycle rule)."""


class StoreUnavailable(Exception):
    """The store could not be asked: network, credentials, or a server error."""


class LifecycleUnsupported(StoreUnavailable):
    """This store has no lifecycle rules (a local directory): expiry is the purge's job."""


@dataclass(frozen=True, slots=True)
class StoredObject:
    """One object as a listing shows it; ``key`` as the storage names it."""

    key: str
    modified: datetime
    size: int


class ObjectWriter(Protocol):
    """One object written from chunks as they arrive: nothing is visible under its key
    before :meth:`commit`, and :meth:`abort` leaves nothing behind (no object, no open
    multipart upload). Memory stays bounded: :meth:`write` blocks while the store is
    behind, instead of holding more."""

    def write(self, data: bytes) -> None: ...

    def commit(self) -> None:
        """The object is stored; raises :class:`StoreUnavailable` if it could not be."""
        ...

    def abort(self) -> None:
        """Forget everything written so far (also after a commit: the object is deleted).
        Never raises: it runs while another failure is being answered."""
        ...


class ObjectStore(Protocol):
    def read(self, key: str) -> bytes: ...

    def stream(
        self, key: str, start: int | None = None, end: int | None = None, chunk: int = DEFAULT_CHUNK
    ) -> Chunks: ...

    def write(self, key: str, fileobj: BinaryIO, content_type: str | None = None) -> None:
        """Store ``fileobj`` under ``key`` (keys are fresh uuids: nothing is overwritten)."""
        ...

    def open_writer(self, key: str, content_type: str | None = None) -> ObjectWriter:
        """A writer that stores ``key`` from chunks as they arrive (streaming uploads)."""
        ...

    def delete(self, key: str) -> None:
        """Delete one object; deleting one that is already gone is not an error."""
        ...

    def delete_many(self, keys: Sequence[str]) -> set[str]:
        """Delete up to :data:`MAX_BATCH` objects; returns the keys that could not be."""
        ...

    # ``builtins.list`` in the annotations: inside the class, ``list`` names this method.
    def list(
        self, prefix: str, page_size: int = MAX_BATCH
    ) -> Iterator[builtins.list[StoredObject]]:
        """Every object under ``prefix``, a page at a time, in key order."""
        ...

    def check(self) -> None:
        """Raise StoreUnavailable unless the store can be used now (readiness probe)."""
        ...

    def full_key(self, key: str) -> str:
        """The key as the backend sees it (with the storage's ``location``)."""
        ...

    def read_lifecycle(self) -> tuple[builtins.list[dict[str, Any]], dict[str, Any]]:
        """The bucket's lifecycle rules and configuration-level settings."""
        ...

    def write_lifecycle(self, rules: Sequence[dict[str, Any]], config: dict[str, Any]) -> None:
        """Replace the bucket's whole lifecycle configuration (S3 has no per-rule PUT)."""
        ...
