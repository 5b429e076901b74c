"""The local directory store: the embedded default when no bucket is configured."""

from __future__ import annotations

import builtins
import contextlib
import logging
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from django.core.files import File
from django.core.files.storage import FileSystemStorage

from mediacache.store.base import (
    DEFAULT_CHUNK,
    MAX_BATCH,
    Chunks,
    LifecycleUnsupported,
    ObjectMissing,
    StoredObject,
    StoreUnavailable,
)

logger = logging.getLogger("mediacache.store")


class FileSystemStore:
    """A directory through Django's ``FileSystemStorage``.

    Deleting an object also removes the ``YYYY/MM/DD`` directories it leaves empty,
    up to (never including) ``keep_dir`` -- the key prefix uploads write into, so a
    directory is never removed from under an upload.
    """

    def __init__(self, storage: FileSystemStorage, *, keep_dir: str = "") -> None:
        self._storage = storage
        self._root = Path(storage.location).resolve()
        self._keep = Path(storage.path(keep_dir or "."))
        self._make_root()

    def _make_root(self) -> None:
        """Made with the adapter (at start-up), not by the first upload: an empty store
        is a ready one (``/readyz``). Failing here is logged; :meth:`check` reports it."""
        if self._root.is_dir():
            return
        mode = self._storage.directory_permissions_mode
        try:
            os.makedirs(self._root, exist_ok=True)
            if mode is not None:  # as FileSystemStorage gives the directories it makes
                os.chmod(self._root, mode)
        except OSError as exc:
            logger.warning("[MEDIA] cannot make the local store %s: %s", self._root, exc)

    def _path(self, key: str) -> str:
        try:
            return self._storage.path(key)
        except Exception as exc:  # SuspiciousFileOperation for keys outside the root
            raise ObjectMissing(key) from exc

    def full_key(self, key: str) -> str:
        return key

    def read(self, key: str) -> bytes:
        try:
            with open(self._path(key), "rb") as fh:
                return fh.read()
        except FileNotFoundError as exc:
            raise ObjectMissing(key) from exc
        except OSError as exc:
            raise StoreUnavailable(str(exc)) from exc

    def stream(
        self, key: str, start: int | None = None, end: int | None = None, chunk: int = DEFAULT_CHUNK
    ) -> Chunks:
        try:
            fh = open(self._path(key), "rb")  # noqa: SIM115 - closed by the generator
        except FileNotFoundError as exc:
            raise ObjectMissing(key) from exc
        except OSError as exc:
            raise StoreUnavailable(str(exc)) from exc
        return _file_chunks(fh, start or 0, end, chunk)

    def write(self, key: str, fileobj: BinaryIO, content_type: str | None = None) -> None:
        try:
            saved = self._storage.save(key, File(fileobj))
        except OSError as exc:
            raise StoreUnavailable(str(exc)) from exc
        if saved != key:
            raise StoreUnavailable(f"{key} was stored as {saved}")

    def open_writer(self, key: str, content_type: str | None = None) -> LocalFileWriter:
        """Written to a temporary file beside the object, renamed into place on commit."""
        path = Path(self._path(key))
        try:
            os.makedirs(path.parent, exist_ok=True)
        except OSError as exc:
            raise StoreUnavailable(str(exc)) from exc
        return LocalFileWriter(path, self._storage.file_permissions_mode, lambda: self.delete(key))

    def check(self) -> None:
        root = self._storage.location
        if not (os.path.isdir(root) and os.access(root, os.R_OK | os.W_OK)):
            raise StoreUnavailable(f"{root} is not a writable directory")

    def delete(self, key: str) -> None:
        try:
            os.remove(self._path(key))
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise StoreUnavailable(str(exc)) from exc
        self._prune_empty_dirs(key)

    def delete_many(self, keys: Sequence[str]) -> set[str]:
        failed = set()
        for key in keys:
            try:
                self.delete(key)
            except (StoreUnavailable, ObjectMissing):
                failed.add(key)
        return failed

    def list(
        self, prefix: str, page_size: int = MAX_BATCH
    ) -> Iterator[builtins.list[StoredObject]]:
        """The directory tree under ``prefix``, in a stable order."""
        batch: list[StoredObject] = []
        for directory, subdirectories, files in os.walk(self._storage.path(prefix)):
            subdirectories.sort()
            for name in sorted(files):
                path = Path(directory, name)
                try:
                    stat = path.stat()
                except FileNotFoundError:  # deleted while we walked
                    continue
                key = path.resolve().relative_to(self._root).as_posix()
                modified = datetime.fromtimestamp(stat.st_mtime, UTC)
                batch.append(StoredObject(key, modified, stat.st_size))
                if len(batch) >= page_size:
                    yield batch
                    batch = []
        if batch:
            yield batch

    def read_lifecycle(self) -> tuple[builtins.list[dict[str, Any]], dict[str, Any]]:
        raise LifecycleUnsupported(f"{self._root} is a local directory, not an S3 bucket")

    def write_lifecycle(self, rules: Sequence[dict[str, Any]], config: dict[str, Any]) -> None:
        raise LifecycleUnsupported(f"{self._root} is a local directory, not an S3 bucket")

    def _prune_empty_dirs(self, key: str) -> None:
        """``rmdir`` fails on a non-empty directory, which ends the walk."""
        directory = Path(self._path(key)).parent
        while directory != self._keep and self._keep in directory.parents:
            try:
                directory.rmdir()
            except OSError:
                return
            directory = directory.parent


class LocalFileWriter:
    """A temporary file in the object's own directory (so the rename is atomic), named
    ``.<name>.part``; see :class:`mediacache.store.base.ObjectWriter`."""

    def __init__(self, path: Path, mode: int | None, delete: Callable[[], None]) -> None:
        self._path = path
        self._mode = mode
        self._delete = delete
        self._committed = False
        try:
            fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
        except OSError as exc:
            raise StoreUnavailable(str(exc)) from exc
        self._temporary = Path(name)
        self._file = os.fdopen(fd, "wb")

    def write(self, data: bytes) -> None:
        try:
            self._file.write(data)
        except OSError as exc:
            raise StoreUnavailable(str(exc)) from exc

    def commit(self) -> None:
        try:
            self._file.close()
            if self._mode is not None:  # as FileSystemStorage gives the files it saves
                os.chmod(self._temporary, self._mode)
            os.replace(self._temporary, self._path)
        except OSError as exc:
            raise StoreUnavailable(str(exc)) from exc
        self._committed = True

    def abort(self) -> None:
        self._file.close()
        with contextlib.suppress(OSError):
            os.unlink(self._temporary)
        if self._committed:
            with contextlib.suppress(StoreUnavailable, ObjectMissing):
                self._delete()


def _file_chunks(fh: BinaryIO, start: int, end: int | None, chunk: int) -> Chunks:
    with fh:
        fh.seek(start)
        remaining = None if end is None else end - start + 1
        while remaining is None or remaining > 0:
            data = fh.read(chunk if remaining is None else min(chunk, remaining))
            if not data:
                return
            if remaining is not None:
                remaining -= len(data)
            yield data
