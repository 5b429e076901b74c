"""``manage.py sweep_orphan_objects``: delete stored objects that no attachment points to.

An upload stores its object first and writes its row second; when the row cannot
be written, ``create_attachment`` deletes the object again. Only a crash in
between (the process killed, the node lost) leaves an object without a row:
nothing links to it, and only the bucket's 30-day lifecycle rule (none on a local
disk) would ever remove it. This command finds those objects and deletes them.

An object counts as attached when any file field of a row names it (the upload
and its WhatsApp-ready variant). Objects younger than ``--min-age`` minutes (60)
are never touched: an upload in
flight has its object stored and its row not yet written. The key prefix
(``MEDIA_KEY_PREFIX``, ``chat/``) is walked page by page — S3's
``list_objects_v2`` paginator, or the directory tree of the local store — and the
database is asked about one batch of keys at a time, again just before deleting.
Safe to run from cron; ``--dry-run`` lists what it would delete.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.core.files.storage import storages
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import models
from django.db.models import Q
from django.utils import timezone

from chat.models import MessageAttachment
from mediacache.core.settings import media_settings
from mediacache.store import MAX_BATCH, ObjectStore, StoredObject, StoreUnavailable, store_for

logger = logging.getLogger("chat")

S3_MAX_DELETE = MAX_BATCH  # DeleteObjects takes at most 1,000 keys


@dataclass
class Totals:
    scanned: int = 0
    young: int = 0
    orphans: int = 0
    bytes: int = 0
    failed: int = 0


class Command(BaseCommand):
    help = (
        "Delete stored objects under the key prefix that no MessageAttachment row points "
        "to and that are older than --min-age minutes (left by a crash between store and "
        "database). Batched; safe to run repeatedly (cron)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--min-age",
            type=int,
            default=60,
            help="Only objects at least this many minutes old (60): spares uploads in flight.",
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="List the orphans; delete nothing."
        )
        parser.add_argument(
            "--batch-size", type=int, default=S3_MAX_DELETE, help="Keys per batch (1000)."
        )
        parser.add_argument(
            "--prefix", default=None, help="Key prefix to walk (MEDIA_KEY_PREFIX, 'chat/')."
        )

    def handle(
        self,
        *args: Any,
        min_age: int,
        dry_run: bool,
        batch_size: int,
        prefix: str | None,
        **options: Any,
    ) -> None:
        if min_age < 0:
            raise CommandError("--min-age must be 0 or more")
        if not 1 <= batch_size <= S3_MAX_DELETE:
            raise CommandError(f"--batch-size must be between 1 and {S3_MAX_DELETE}")
        key_prefix = media_settings().KEY_PREFIX
        prefix = key_prefix if prefix is None else prefix
        if not prefix.strip("/"):
            # Without a prefix every object of a shared bucket would look orphaned.
            raise CommandError("refusing to sweep without a key prefix")
        store = store_for(storages["default"], key_prefix=key_prefix)
        cutoff = timezone.now() - timedelta(minutes=min_age)
        totals = Totals()
        for batch in store.list(prefix, batch_size):
            totals.scanned += len(batch)
            old = [o for o in batch if o.modified <= cutoff]
            totals.young += len(batch) - len(old)
            orphans = _without_rows(old)
            if orphans and not dry_run:
                # Asked again just before deleting: a row that landed meanwhile wins.
                orphans = _without_rows(orphans)
            for obj in orphans:
                age = timezone.now() - obj.modified
                self.stdout.write(f"{obj.key}\t{obj.size}\t{_minutes(age)} min old")
            if orphans and not dry_run:
                failed = self._delete(store, [o.key for o in orphans])
                for obj in orphans:
                    if obj.key not in failed:
                        logger.warning("[CHAT] sweeper deleted orphan object %s", obj.key)
                totals.failed += len(failed)
                orphans = [o for o in orphans if o.key not in failed]
            totals.orphans += len(orphans)
            totals.bytes += sum(o.size for o in orphans)
        self._report(totals, prefix, min_age, dry_run)

    def _delete(self, store: ObjectStore, keys: list[str]) -> set[str]:
        """The keys that could not be deleted (all of them when the store is down)."""
        try:
            failed = store.delete_many(keys)
        except StoreUnavailable as exc:
            logger.error("[CHAT] sweeper could not delete %d object(s): %s", len(keys), exc)
            return set(keys)
        for key in sorted(failed):
            logger.error("[CHAT] sweeper could not delete %s", key)
        return failed

    def _report(self, totals: Totals, prefix: str, min_age: int, dry_run: bool) -> None:
        done = "would be deleted" if dry_run else "deleted"
        self.stdout.write(
            f"{'Dry run: ' if dry_run else ''}{totals.orphans:,} orphan object(s) "
            f"({totals.bytes:,} bytes) {done}; scanned {totals.scanned:,} under {prefix!r}, "
            f"{totals.young:,} younger than {min_age} min left alone."
        )
        if totals.failed:
            raise CommandError(f"{totals.failed} orphan object(s) could not be deleted")


def _minutes(age: timedelta) -> int:
    return int(age.total_seconds() // 60)


def _key_fields() -> list[str]:
    """Every FileField of the attachment (the upload and its WhatsApp-ready variant)."""
    return [f.name for f in MessageAttachment._meta.fields if isinstance(f, models.FileField)]


def _without_rows(objects: list[StoredObject]) -> list[StoredObject]:
    """The objects no attachment row points to, in any of its file fields (one query)."""
    if not objects:
        return []
    keys = [o.key for o in objects]
    fields = _key_fields()
    matches = Q()
    for name in fields:
        matches |= Q(**{f"{name}__in": keys})
    known: set[str] = set()
    for values in MessageAttachment.objects.filter(matches).values_list(*fields):
        known.update(values)
    return [o for o in objects if o.key not in known]
