"""An S3 bucket (AWS, MinIO) through the boto3 client of a django-storages ``S3Storage``.

It honours what the storage is configured with: its ``location`` (``AWS_LOCATION``:
keys are stored under it, as django-storages stores them), its object parameters
(``get_object_parameters``, ``default_acl``) on writes, and its client settings
(endpoint, credentials, timeouts, retries), since it uses that storage's client.
"""

from __future__ import annotations

import builtins
import mimetypes
import threading
from collections.abc import Iterator, Sequence
from typing import Any, BinaryIO

from boto3.s3.transfer import TransferConfig  # type: ignore[import-untyped]  # boto3 has no stubs
from botocore.exceptions import BotoCoreError, ClientError
from django.core.files.storage import Storage

from mediacache.store.base import (
    DEFAULT_CHUNK,
    MAX_BATCH,
    Chunks,
    ObjectMissing,
    StoredObject,
    StoreUnavailable,
)
from mediacache.store.s3_stream import PART_BYTES, S3StreamWriter

# Objects up to this size go in one PutObject: upload_fileobj's transfer manager starts
# a pool of threads on every call (CPU and threads a small object does not need; the
# WRITE PATH bench shows no latency gain above its noise on moto, ~21 ms either way for
# a 50 KB upload, and less web-process CPU per upload). Larger
# ones go multipart in parts of S3's smallest size, two at a time, with one part read
# ahead: s3transfer reads each part of a file object into memory, and by default keeps
# ten read ahead (80 MB per upload at its 8 MB parts). Measured by the WRITE PATH bench:
# 4 concurrent 60 MB uploads grew the server by 60 MiB each before, 11 MiB each after.
SINGLE_PUT_BYTES = 8 * 1024 * 1024
_TRANSFER = TransferConfig(
    multipart_threshold=SINGLE_PUT_BYTES, multipart_chunksize=PART_BYTES, max_concurrency=2
)
# s3transfer's own setting, which boto3's TransferConfig takes no argument for
# (tests/unit/test_s3transfer_contract.py checks that s3transfer still reads it).
_TRANSFER.max_in_memory_upload_chunks = 1
_MISSING_CODES = frozenset({"NoSuchKey", "404", "NotFound", "NoSuchBucket"})
# Settings of a lifecycle configuration as a whole that S3 returns beside the rules;
# a PUT without them resets them to the provider's default, so they are carried over.
_LIFECYCLE_KEYS = ("TransitionDefaultMinimumObjectSize",)


def is_s3_storage(storage: Storage) -> bool:
    """A django-storages S3 backend (or one shaped like it: a bucket and a boto3 resource)."""
    return bool(getattr(storage, "bucket_name", None)) and hasattr(storage, "connection")


class S3Store:
    def __init__(self, storage: Storage) -> None:
        # ``bucket_name``, ``connection`` and ``get_object_parameters`` are attributes of
        # django-storages' S3Storage (is_s3_storage() picked it), which has no type hints:
        # on this Storage-typed value each use carries an ``attr-defined`` ignore.
        self._storage = storage
        self.bucket: str = storage.bucket_name  # type: ignore[attr-defined]  # S3Storage's
        location = (getattr(storage, "location", "") or "").strip("/")
        self._location = f"{location}/" if location else ""
        self._client: Any = None
        self._lock = threading.Lock()

    @property
    def client(self) -> Any:
        """One thread-safe boto3 client, made on first use with the storage's config.

        Not django-storages' per-thread connection: Django runs each request's sync
        code in a new thread, and a session per thread costs 0.25-0.6 s of CPU."""
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = self._storage.connection.meta.client  # type: ignore[attr-defined]  # S3Storage's
        return self._client

    def full_key(self, key: str) -> str:
        return self._location + key

    def _get(self, key: str, start: int | None = None, end: int | None = None) -> Any:
        kwargs = {"Bucket": self.bucket, "Key": self.full_key(key)}
        if start is not None:
            kwargs["Range"] = f"bytes={start}-{'' if end is None else end}"
        try:
            return self.client.get_object(**kwargs)
        except ClientError as exc:
            code = _code(exc)
            if code in _MISSING_CODES:
                raise ObjectMissing(key) from exc
            raise StoreUnavailable(f"S3 {code or 'error'}") from exc
        except BotoCoreError as exc:
            raise StoreUnavailable(type(exc).__name__) from exc

    def read(self, key: str) -> bytes:
        response = self._get(key)
        try:
            body: bytes = response["Body"].read()
        except (BotoCoreError, OSError) as exc:
            raise StoreUnavailable(type(exc).__name__) from exc
        return body

    def stream(
        self, key: str, start: int | None = None, end: int | None = None, chunk: int = DEFAULT_CHUNK
    ) -> Chunks:
        response = self._get(key, start, end)
        return _body_chunks(response["Body"], chunk)

    def _write_params(self, key: str, content_type: str | None) -> dict[str, Any]:
        """The storage's object parameters (``get_object_parameters``, ACL) and a type."""
        params = dict(self._storage.get_object_parameters(key))  # type: ignore[attr-defined]  # S3Storage's
        params.setdefault(
            "ContentType",
            content_type or mimetypes.guess_type(key)[0] or "application/octet-stream",
        )
        acl = getattr(self._storage, "default_acl", None)
        if acl and "ACL" not in params:
            params["ACL"] = acl
        return params

    def open_writer(self, key: str, content_type: str | None = None) -> S3StreamWriter:
        """Parts leave while later chunks arrive (:mod:`mediacache.store.s3_stream`)."""
        params = self._write_params(key, content_type)
        return S3StreamWriter(
            self.client, self.bucket, self.full_key(key), params, part_bytes=PART_BYTES
        )

    def write(self, key: str, fileobj: BinaryIO, content_type: str | None = None) -> None:
        """With the storage's object parameters (``get_object_parameters``, ACL)."""
        params = self._write_params(key, content_type)
        try:
            size = _size_left(fileobj)
            if size is not None and size <= SINGLE_PUT_BYTES:
                self.client.put_object(
                    Bucket=self.bucket, Key=self.full_key(key), Body=fileobj, **params
                )
            else:
                self.client.upload_fileobj(
                    fileobj, self.bucket, self.full_key(key), ExtraArgs=params, Config=_TRANSFER
                )
        except (ClientError, BotoCoreError, OSError) as exc:
            raise StoreUnavailable(type(exc).__name__) from exc

    def check(self) -> None:
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except (ClientError, BotoCoreError) as exc:
            raise StoreUnavailable(f"bucket {self.bucket}: {type(exc).__name__}") from exc

    def delete(self, key: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self.full_key(key))
        except (ClientError, BotoCoreError) as exc:
            raise StoreUnavailable(type(exc).__name__) from exc

    def delete_many(self, keys: Sequence[str]) -> set[str]:
        """One ``DeleteObjects`` request (at most :data:`MAX_BATCH` keys)."""
        if not keys:
            return set()
        if len(keys) > MAX_BATCH:
            raise ValueError(f"at most {MAX_BATCH} keys per call, got {len(keys)}")
        objects = [{"Key": self.full_key(k)} for k in keys]
        try:
            response = self.client.delete_objects(
                Bucket=self.bucket, Delete={"Objects": objects, "Quiet": True}
            )
        except (ClientError, BotoCoreError) as exc:
            raise StoreUnavailable(type(exc).__name__) from exc
        return {error["Key"][len(self._location) :] for error in response.get("Errors", [])}

    def list(
        self, prefix: str, page_size: int = MAX_BATCH
    ) -> Iterator[builtins.list[StoredObject]]:
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket,
            Prefix=self.full_key(prefix),
            PaginationConfig={"PageSize": page_size},
        )
        cut = len(self._location)
        try:
            for page in pages:
                batch = [
                    StoredObject(item["Key"][cut:], item["LastModified"], item["Size"])
                    for item in page.get("Contents", [])
                ]
                if batch:
                    yield batch
        except (ClientError, BotoCoreError) as exc:
            raise StoreUnavailable(f"listing {self.bucket}: {type(exc).__name__}") from exc

    def read_lifecycle(self) -> tuple[builtins.list[dict[str, Any]], dict[str, Any]]:
        try:
            response = self.client.get_bucket_lifecycle_configuration(Bucket=self.bucket)
        except ClientError as exc:
            if _code(exc) == "NoSuchLifecycleConfiguration":
                return [], {}
            raise StoreUnavailable(f"bucket {self.bucket}: S3 {_code(exc) or 'error'}") from exc
        except BotoCoreError as exc:
            raise StoreUnavailable(f"bucket {self.bucket}: {type(exc).__name__}") from exc
        config = {key: response[key] for key in _LIFECYCLE_KEYS if response.get(key)}
        return list(response.get("Rules", [])), config

    def write_lifecycle(self, rules: Sequence[dict[str, Any]], config: dict[str, Any]) -> None:
        try:
            self.client.put_bucket_lifecycle_configuration(
                Bucket=self.bucket, LifecycleConfiguration={"Rules": list(rules)}, **config
            )
        except (ClientError, BotoCoreError) as exc:
            raise StoreUnavailable(f"bucket {self.bucket}: {type(exc).__name__}: {exc}") from exc


def _size_left(fileobj: BinaryIO) -> int | None:
    """Bytes from the current position to the end, or None when the file cannot seek."""
    try:
        here = fileobj.tell()
        end = fileobj.seek(0, 2)
        fileobj.seek(here)
    except (AttributeError, OSError, ValueError):
        return None
    return end - here


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _body_chunks(body: Any, chunk: int) -> Chunks:
    try:
        while data := body.read(chunk):
            yield data
    except (BotoCoreError, OSError) as exc:
        raise StoreUnavailable(type(exc).__name__) from exc
    finally:
        body.close()
