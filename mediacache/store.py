"""Read access to the object store behind Django's default storage.

Uploads are written through Django's storage API (django-storages for S3); the
serving path needs what that API lacks: byte ranges, streaming in chunks, and a
clear line between "the object is gone" (404) and "the store is down" (503).
All methods are blocking; the serving app calls them from a thread pool.
"""

from __future__ import annotations

import logging
import mimetypes
import os
import threading
from collections.abc import Iterator
from typing import BinaryIO, Protocol

from django.core.files import File
from django.core.files.storage import FileSystemStorage, Storage

logger = logging.getLogger("mediacache.store")


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


class FileSystemStore:
    """A local directory: the embedded default when no bucket is configured."""

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


_MISSING_CODES = frozenset({"NoSuchKey", "404", "NotFound", "NoSuchBucket"})


class S3Store:
    """An S3 bucket (AWS or MinIO) through the boto3 client of a django-storages backend."""

    def __init__(self, storage: Storage) -> None:
        self._storage = storage
        self._bucket: str = storage.bucket_name  # type: ignore[attr-defined]
        self._client = None
        self._lock = threading.Lock()

    @property
    def client(self):
        """One thread-safe boto3 client, made on first use with the storage's config."""
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = self._storage.connection.meta.client  # type: ignore[attr-defined]
        return self._client

    def _get(self, key: str, start: int | None = None, end: int | None = None):
        from botocore.exceptions import BotoCoreError, ClientError

        kwargs = {"Bucket": self._bucket, "Key": key}
        if start is not None:
            kwargs["Range"] = f"bytes={start}-{'' if end is None else end}"
        try:
            return self.client.get_object(**kwargs)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in _MISSING_CODES:
                raise ObjectMissing(key) from exc
            raise StoreUnavailable(f"S3 {code or 'error'}") from exc
        except BotoCoreError as exc:
            raise StoreUnavailable(type(exc).__name__) from exc

    def read(self, key: str) -> bytes:
        from botocore.exceptions import BotoCoreError

        response = self._get(key)
        try:
            return response["Body"].read()
        except (BotoCoreError, OSError) as exc:
            raise StoreUnavailable(type(exc).__name__) from exc

    def stream(
        self, key: str, start: int | None = None, end: int | None = None, chunk: int = 262144
    ) -> Iterator[bytes]:
        response = self._get(key, start, end)
        return _body_chunks(response["Body"], chunk)

    def write(self, key: str, fileobj: BinaryIO) -> None:
        """Through the one shared client: django-storages keeps a boto3 session per
        thread, and Django runs each request's sync code in a new thread, so saving
        through it builds a session per upload (0.25-0.6 s of CPU, under the GIL)."""
        from botocore.exceptions import BotoCoreError, ClientError

        content_type = mimetypes.guess_type(key)[0] or "application/octet-stream"
        try:
            self.client.upload_fileobj(
                fileobj, self._bucket, key, ExtraArgs={"ContentType": content_type}
            )
        except (ClientError, BotoCoreError, OSError) as exc:
            raise StoreUnavailable(type(exc).__name__) from exc

    def check(self) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.head_bucket(Bucket=self._bucket)
        except (ClientError, BotoCoreError) as exc:
            raise StoreUnavailable(f"bucket {self._bucket}: {type(exc).__name__}") from exc

    def delete(self, key: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.delete_object(Bucket=self._bucket, Key=key)
        except (ClientError, BotoCoreError) as exc:
            raise StoreUnavailable(type(exc).__name__) from exc


def _body_chunks(body, chunk: int) -> Iterator[bytes]:
    from botocore.exceptions import BotoCoreError

    try:
        while data := body.read(chunk):
            yield data
    except (BotoCoreError, OSError) as exc:
        raise StoreUnavailable(type(exc).__name__) from exc
    finally:
        body.close()


def store_for(storage: Storage) -> ObjectStore:
    """The read adapter that fits a Django storage backend."""
    if isinstance(storage, FileSystemStorage):
        return FileSystemStore(storage)
    if hasattr(storage, "bucket_name") and hasattr(storage, "connection"):
        return S3Store(storage)
    raise TypeError(f"mediacache cannot serve from {type(storage).__name__}")
