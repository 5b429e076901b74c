"""An S3 bucket (AWS or MinIO) through the boto3 client of a django-storages backend."""

from __future__ import annotations

import mimetypes
import threading
from collections.abc import Iterator
from typing import BinaryIO

from django.core.files.storage import Storage

from mediacache.store.base import ObjectMissing, StoreUnavailable

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
