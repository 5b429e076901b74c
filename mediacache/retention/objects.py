"""Which fields of the registered model name stored objects, and the store adapter of each.

A field's own ``storage=`` is honoured: each field's objects are deleted (and
walked) through the adapter of the storage it writes to, one adapter per storage.
"""

from __future__ import annotations

from django.db import models

from mediacache.registry import MediaModel
from mediacache.store import ObjectStore, store_for


def key_fields(registered: MediaModel) -> list[str]:
    """Every field whose value is an object key: each ``FileField`` of the model (the
    upload, its variant, and any other file the host keeps there) and the map's
    ``file`` and ``variant`` (a variant may be kept as a plain key)."""
    names = [f.name for f in registered.model._meta.fields if isinstance(f, models.FileField)]
    mapped = [registered.fields.file, registered.fields.variant]
    return list(dict.fromkeys([*names, *(n for n in mapped if n)]))


class FieldStores:
    """The store adapter behind each key field; ``key_prefix`` as :func:`store_for` takes it."""

    def __init__(self, registered: MediaModel, *, key_prefix: str = "") -> None:
        self.registered = registered
        self.key_prefix = key_prefix
        self._adapters: dict[int, ObjectStore] = {}

    def of(self, field: str) -> ObjectStore:
        """The adapter of ``field``'s storage; a field without one (a key kept in a plain
        text field) is taken to name objects beside the upload's."""
        storage = getattr(self.registered.model._meta.get_field(field), "storage", None)
        if storage is None:
            if field == self.registered.fields.file:
                raise TypeError(f"{self.registered.model._meta.label}.{field} is no file field")
            return self.of(self.registered.fields.file)
        if id(storage) not in self._adapters:
            self._adapters[id(storage)] = store_for(storage, key_prefix=self.key_prefix)
        return self._adapters[id(storage)]

    def distinct(self) -> list[ObjectStore]:
        """One adapter per storage any key field writes to (each walked once)."""
        return list({id(s): s for s in (self.of(f) for f in key_fields(self.registered))}.values())
