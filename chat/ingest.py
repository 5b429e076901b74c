"""One upload's bytes through one pipeline, chunk by chunk, as they arrive.

Each chunk passes the size limit (``MEDIA_MAX_UPLOAD_BYTES``), the SHA-256, the type
sniff (on the first :data:`chat.uploads.SNIFF_BYTES`, the same sniff as Django's path),
the store writer (S3 parts leave while later chunks arrive) and a spooled copy for the
conversion (in memory up to ``FILE_UPLOAD_MAX_MEMORY_SIZE``, then a temporary file, as
Django's own upload handlers keep one). What comes out is the Django upload object
:func:`chat.services.create_attachment` takes, with its object already stored.

All calls block (store writes, disk): :mod:`chat.streaming` runs them off the event loop.
"""

from __future__ import annotations

import hashlib
import io
import logging
from dataclasses import dataclass

from django.conf import settings
from django.core.files.uploadedfile import (
    InMemoryUploadedFile,
    TemporaryUploadedFile,
    UploadedFile,
)

from mediacache.core.settings import media_settings
from mediacache.media.types import SniffedType
from mediacache.store.base import ObjectStore, ObjectWriter, StoreUnavailable

from .uploads import SNIFF_BYTES, UploadTooLarge, new_object_key, sniff

logger = logging.getLogger("chat")


class EmptyUpload(Exception):
    """The file part held no bytes; nothing was stored."""


@dataclass(frozen=True)
class StoredUpload:
    """An upload whose bytes the store already has under ``key``."""

    key: str
    kind: SniffedType


@dataclass(frozen=True)
class Ingested:
    """The finished pipeline: the spooled copy (a Django upload), its digest, where it is."""

    file: UploadedFile
    sha256: str
    stored: StoredUpload


class UploadIngest:
    """Feed it the file's chunks, then :meth:`finish` (stored) or :meth:`abort` (nothing kept)."""

    def __init__(self, store: ObjectStore, *, filename: str, content_type: str) -> None:
        self._store = store
        self._filename = filename
        self._content_type = content_type or "application/octet-stream"
        self._limit = media_settings().MAX_UPLOAD_BYTES
        self._size = 0
        self._sha256 = hashlib.sha256()
        self._head: list[bytes] = []  # until SNIFF_BYTES are here and the key can be named
        self._stored: StoredUpload | None = None
        self._writer: ObjectWriter | None = None
        self._spool: UploadedFile = InMemoryUploadedFile(
            io.BytesIO(), "file", filename, self._content_type, None, None
        )

    @property
    def size(self) -> int:
        return self._size

    def feed(self, chunks: list[bytes]) -> None:
        for chunk in chunks:
            self._feed(chunk)

    def _feed(self, chunk: bytes) -> None:
        self._size += len(chunk)
        if self._size > self._limit:
            raise UploadTooLarge(self._limit)
        self._sha256.update(chunk)
        self._spool_write(chunk)
        if self._writer is not None:
            self._writer.write(chunk)
            return
        self._head.append(chunk)
        if self._size >= SNIFF_BYTES:
            self._open_writer()

    def finish(self) -> Ingested:
        """Commit the store write; the spooled copy is rewound for whoever reads it next."""
        if self._size == 0:
            raise EmptyUpload("the file is empty")
        if self._writer is None:
            self._open_writer()
        # Both set by _open_writer, just above at the latest.
        assert self._writer is not None
        assert self._stored is not None
        self._writer.commit()
        spool = self._spool
        spool.size = self._size
        spool.seek(0)
        return Ingested(spool, self._sha256.hexdigest(), self._stored)

    def abort(self) -> None:
        """Nothing kept: the store's object or multipart upload, the spooled copy."""
        if self._writer is not None:
            self._writer.abort()
        self._spool.close()

    def _open_writer(self) -> None:
        head = b"".join(self._head)
        self._head.clear()
        kind = sniff(head[:SNIFF_BYTES])
        self._stored = StoredUpload(new_object_key(kind.extension), kind)
        self._writer = self._store.open_writer(self._stored.key)
        self._writer.write(head)

    def _spool_write(self, chunk: bytes) -> None:
        spool = self._spool
        if isinstance(spool, InMemoryUploadedFile) and (
            self._size > settings.FILE_UPLOAD_MAX_MEMORY_SIZE
        ):
            # Past the memory size: to a temporary file, as Django's handlers do.
            on_disk = TemporaryUploadedFile(self._filename, self._content_type, 0, None)
            try:
                on_disk.write(spool.file.getbuffer())  # type: ignore[union-attr]  # a BytesIO
            except OSError as exc:
                on_disk.close()
                raise StoreUnavailable(f"spooling the upload: {exc}") from exc
            spool.close()
            self._spool = spool = on_disk
        spool.write(chunk)
