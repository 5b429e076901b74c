"""The local directory store: the embedded default when no bucket is configured."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import BinaryIO

from django.core.files import File
from django.core.files.storage import FileSystemStorage

from mediacache.store.base import ObjectMissing, StoreUnavailable


class FileSystemStore:
    """A directory through Django's ``FileSystemStorage``."""

    def __init__(self, storage: FileSystemStorage) -> None:
        self._storage = storage

    def _path(self, key: str) -> str:
        try:
            return self._storage.path(key)
        except Exception as exc:  # SuspiciousFileOperation for keys outside the root
            raise ObjectMissing(key) from exc

    def read(self, key: str) -> bytes:
        try:
            with open(self._path(key), "rb") as fh:
                return fh.read()
        except FileNotFoundError as exc:
            raise ObjectMissing(key) from exc
        except OSError as exc:
            raise StoreUnavailable(str(exc)) from exc

    def stream(
        self, key: str, start: int | None = None, end: int | None = None, chunk: int = 262144
    ) -> Iterator[bytes]:
        try:
            fh = open(self._path(key), "rb")  # noqa: SIM115 - closed by the generator
        except FileNotFoundError as exc:
            raise ObjectMissing(key) from exc
        except OSError as exc:
            raise StoreUnavailable(str(exc)) from exc
        return _file_chunks(fh, start or 0, end, chunk)

    def write(self, key: str, fileobj: BinaryIO) -> None:
        try:
            saved = self._storage.save(key, File(fileobj))
        except OSError as exc:
            raise StoreUnavailable(str(exc)) from exc
        if saved != key:
            raise StoreUnavailable(f"{key} was stored as {saved}")

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


def _file_chunks(fh, start: int, end: int | None, chunk: int) -> Iterator[bytes]:
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
