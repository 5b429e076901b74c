"""Find and delete stored objects that no attachment row points to.

An upload stores its object first and writes its row second; when the row cannot
be written, the object is deleted again. Only a crash in between (the process
killed, the node lost) leaves an object without a row: nothing links to it, and
only the bucket's lifecycle rule (none on a local disk) would ever remove it.

An object counts as attached when any key field of a row of the registered model
names it (:func:`~mediacache.retention.objects.key_fields`: the upload, its variant,
any other file field of the model). Objects of other models must not live under
the key prefix: they would look orphaned. Objects younger than ``min_age`` are
never touched: an upload in flight has its object stored and its row not yet
written. The prefix is walked page by page in every storage a key field writes to
(S3's ``list_objects_v2`` paginator, or the directory tree of a local store), and
the database is asked about one page of keys at a time, and again just before
deleting, so a row that landed meanwhile wins.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Q
from django.utils import timezone

from mediacache.core.settings import media_settings
from mediacache.registry import MediaModel, media_model
from mediacache.retention.objects import FieldStores, key_fields
from mediacache.store import MAX_BATCH, ObjectStore, StoredObject, StoreUnavailable

logger = logging.getLogger("mediacache.retention")

OrphanHandler = Callable[[StoredObject], None]


@dataclass
class SweepTotals:
    scanned: int = 0
    young: int = 0
    orphans: int = 0
    bytes: int = 0
    failed: int = 0


def _ignore(obj: StoredObject) -> None:
    pass


class OrphanSweep:
    """One sweep of ``prefix`` (default: the key prefix) for objects without rows."""

    def __init__(
        self,
        registered: MediaModel,
        *,
        key_prefix: str,
        prefix: str | None = None,
        min_age: timedelta = timedelta(minutes=60),
        batch_size: int = MAX_BATCH,
    ) -> None:
        self.prefix = key_prefix if prefix is None else prefix
        if not self.prefix.strip("/"):
            # Without a prefix every object of a shared bucket would look orphaned.
            raise ValueError("refusing to sweep without a key prefix")
        if min_age < timedelta(0):
            raise ValueError("the minimum age must be 0 or more")
        if not 1 <= batch_size <= MAX_BATCH:
            raise ValueError(f"the batch size must be between 1 and {MAX_BATCH}")
        self.registered = registered
        self.stores = FieldStores(registered, key_prefix=key_prefix)
        self.min_age = min_age
        self.batch_size = batch_size
        self.totals = SweepTotals()

    @classmethod
    def from_settings(
        cls,
        *,
        prefix: str | None = None,
        min_age: timedelta = timedelta(minutes=60),
        batch_size: int = MAX_BATCH,
    ) -> OrphanSweep:
        """The sweep of the model in ``MEDIACACHE["MODEL"]``; ``prefix`` defaults to its
        ``KEY_PREFIX``."""
        key_prefix = media_settings().KEY_PREFIX
        return cls(
            media_model(),
            key_prefix=key_prefix,
            prefix=prefix,
            min_age=min_age,
            batch_size=batch_size,
        )

    def run(self, *, dry_run: bool = False, on_orphan: OrphanHandler = _ignore) -> SweepTotals:
        """Walk every storage; ``on_orphan`` sees each orphan before it is deleted (or,
        in a dry run, instead)."""
        cutoff = timezone.now() - self.min_age
        for store in self.stores.distinct():
            for page in store.list(self.prefix, self.batch_size):
                self._sweep_page(store, page, cutoff, dry_run, on_orphan)
        return self.totals

    def _sweep_page(
        self,
        store: ObjectStore,
        page: list[StoredObject],
        cutoff: datetime,
        dry_run: bool,
        on_orphan: OrphanHandler,
    ) -> None:
        totals = self.totals
        totals.scanned += len(page)
        old = [o for o in page if o.modified <= cutoff]
        totals.young += len(page) - len(old)
        orphans = self._without_rows(old)
        if orphans and not dry_run:
            # Asked again just before deleting: a row that landed meanwhile wins.
            orphans = self._without_rows(orphans)
        for obj in orphans:
            on_orphan(obj)
        if orphans and not dry_run:
            failed = self._delete(store, [o.key for o in orphans])
            for obj in orphans:
                if obj.key not in failed:
                    logger.warning("[MEDIA] sweeper deleted orphan object %s", obj.key)
            totals.failed += len(failed)
            orphans = [o for o in orphans if o.key not in failed]
        totals.orphans += len(orphans)
        totals.bytes += sum(o.size for o in orphans)

    def _delete(self, store: ObjectStore, keys: list[str]) -> set[str]:
        """The keys that could not be deleted (all of them when the store is down)."""
        try:
            failed = store.delete_many(keys)
        except StoreUnavailable as exc:
            logger.error("[MEDIA] sweeper could not delete %d object(s): %s", len(keys), exc)
            return set(keys)
        for key in sorted(failed):
            logger.error("[MEDIA] sweeper could not delete %s", key)
        return failed

    def _without_rows(self, objects: list[StoredObject]) -> list[StoredObject]:
        """The objects no row names, in any of its key fields (one query)."""
        if not objects:
            return []
        keys = [o.key for o in objects]
        fields = key_fields(self.registered)
        matches = Q()
        for name in fields:
            matches |= Q(**{f"{name}__in": keys})
        known: set[str] = set()
        for values in self.registered.queryset().filter(matches).values_list(*fields):
            known.update(v for v in values if v)
        return [o for o in objects if o.key not in known]
