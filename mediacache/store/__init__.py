"""The object store behind the links: one adapter per kind of Django storage.

Uploads, the serving path, retention and the commands all go through the adapter
that :func:`store_for` picks for a Django storage backend.
"""

from __future__ import annotations

from django.core.files.storage import FileSystemStorage, Storage

from mediacache.store.base import ObjectMissing, ObjectStore, StoreUnavailable
from mediacache.store.local import FileSystemStore
from mediacache.store.s3 import S3Store

__all__ = [
    "FileSystemStore",
    "ObjectMissing",
    "ObjectStore",
    "S3Store",
    "StoreUnavailable",
    "store_for",
]


def store_for(storage: Storage) -> ObjectStore:
    """The read adapter that fits a Django storage backend."""
    if isinstance(storage, FileSystemStorage):
        return FileSystemStore(storage)
    if hasattr(storage, "bucket_name") and hasattr(storage, "connection"):
        return S3Store(storage)
    raise TypeError(f"mediacache cannot serve from {type(storage).__name__}")
