"""The object store behind the links: one adapter per kind of Django storage.

Uploads, the serving path, retention and the commands all go through the adapter
that :func:`store_for` picks for a Django storage backend (the default storage, or
a ``FileField``'s own ``storage=``).
"""

from __future__ import annotations

from django.core.files.storage import FileSystemStorage, Storage

from mediacache.store.base import (
    MAX_BATCH,
    LifecycleUnsupported,
    ObjectMissing,
    ObjectStore,
    StoredObject,
    StoreUnavailable,
)
from mediacache.store.local import FileSystemStore
from mediacache.store.s3 import S3Store, is_s3_storage

__all__ = [
    "MAX_BATCH",
    "FileSystemStore",
    "LifecycleUnsupported",
    "ObjectMissing",
    "ObjectStore",
    "S3Store",
    "StoreUnavailable",
    "StoredObject",
    "store_for",
]


def store_for(storage: Storage, *, key_prefix: str = "") -> ObjectStore:
    """The adapter that fits a Django storage backend. ``key_prefix``: where uploads go
    (a local store never removes that directory when it prunes empty ones)."""
    if isinstance(storage, FileSystemStorage):
        return FileSystemStore(storage, keep_dir=key_prefix)
    if is_s3_storage(storage):
        return S3Store(storage)
    raise TypeError(f"mediacache cannot serve from {type(storage).__name__}")
