"""``manage.py purge_expired_media``: delete what has expired, from every store, safely from cron.

The serving path already answers 404 for an expired attachment; this command
frees the bytes. With the local directory store it is the only thing that does
(there are no lifecycle rules on a disk). On S3 the bucket's lifecycle rule
remains the primary mechanism, but S3 runs it asynchronously (often a day or
more late); deleting here too makes "expired" mean "gone" on the day, and a
DELETE of a key the rule already removed is a harmless no-op.

Each row is marked ``purged_at`` only after its object is gone, so a run that
fails half-way is finished by the next one; rows already marked are skipped.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from django.core.files.storage import storages
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db.models import QuerySet, Sum
from django.utils import timezone

from chat.models import MessageAttachment
from mediacache.core.hashes import original_key
from mediacache.core.settings import media_settings
from mediacache.engine import get_engine
from mediacache.store import ObjectMissing, ObjectStore, StoreUnavailable, store_for

logger = logging.getLogger("chat")

Row = tuple[int, str, str, str | None, int]  # pk, object key, variant key, media hash, size


@dataclass
class Totals:
    purged: int = 0
    bytes: int = 0
    cache_purged: int = 0
    cache_failed: int = 0
    failed: int = 0


def expired_attachments(now) -> QuerySet[MessageAttachment]:
    """Rows the serving path already treats as expired and that still have their object.

    Rows without ``expires_at`` never expire when served, so they are left alone
    here too (``generate_media_hashes`` gives legacy rows their expiry).
    """
    return MessageAttachment.objects.filter(expires_at__lte=now, purged_at__isnull=True)


class Command(BaseCommand):
    help = (
        "Delete the stored objects of expired attachments, purge them from the caches and "
        "mark the rows purged. Batched; safe to run repeatedly (cron)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--batch-size", type=int, default=500, help="Rows per batch (500).")
        parser.add_argument(
            "--dry-run", action="store_true", help="Count what would be purged; change nothing."
        )

    def handle(self, *args: Any, batch_size: int, dry_run: bool, **options: Any) -> None:
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1")
        queryset = expired_attachments(timezone.now())
        if dry_run:
            self._report_dry_run(queryset)
            return
        store = store_for(storages["default"], key_prefix=media_settings().KEY_PREFIX)
        totals = Totals()
        last_pk = 0
        while rows := self._next_batch(queryset, last_pk, batch_size):
            last_pk = rows[-1][0]
            self._purge_batch(rows, store, totals)
            if options["verbosity"] >= 2:
                self.stdout.write(f"  up to id {last_pk}: {totals.purged:,} purged so far")
        self._report(totals)

    def _next_batch(self, queryset: QuerySet, last_pk: int, size: int) -> list[Row]:
        """Walk by primary key: each batch is a short, indexed query; no long transaction."""
        return list(
            queryset.filter(pk__gt=last_pk)
            .order_by("pk")
            .values_list("pk", "file", "variant", "media_hash", "size")[:size]
        )

    def _purge_batch(self, rows: list[Row], store: ObjectStore, totals: Totals) -> None:
        engine = get_engine()
        gone: list[int] = []
        for pk, key, variant_key, media_hash, size in rows:
            if media_hash:
                # Redis first: it is shared by every process, and an entry's own TTL
                # already ends at expiry, so this only shortens the tail. A variant's
                # link has its original cached apart, at /media/{hash}/original.
                if variant_key:
                    engine.purge(original_key(media_hash))
                if engine.purge(media_hash):
                    totals.cache_purged += 1
                else:
                    totals.cache_failed += 1
            # The variant first: a row stays unmarked until its original is gone too,
            # so a failed run never leaves a variant nobody will delete.
            keys = [k for k in (variant_key, key) if k]
            if not all([self._delete(store, k) for k in dict.fromkeys(keys)]):
                totals.failed += 1
                continue
            gone.append(pk)
            totals.bytes += size
        totals.purged += MessageAttachment.objects.filter(
            pk__in=gone, purged_at__isnull=True
        ).update(purged_at=timezone.now())

    def _delete(self, store: ObjectStore, key: str) -> bool:
        """Delete one object; True when it is gone (including "was already gone")."""
        try:
            store.delete(key)
        except ObjectMissing:
            return True
        except StoreUnavailable as exc:
            logger.error("[CHAT] purge: could not delete %s: %s", key, exc)
            self.stderr.write(f"could not delete {key}: {exc}")
            return False
        return True

    def _report_dry_run(self, queryset: QuerySet) -> None:
        count = queryset.count()
        size = queryset.aggregate(total=Sum("size"))["total"] or 0
        self.stdout.write(
            f"Dry run: {count:,} expired attachment(s) ({size:,} bytes) would be purged; "
            "nothing deleted."
        )

    def _report(self, totals: Totals) -> None:
        self.stdout.write(
            f"Purged {totals.purged:,} expired attachment(s) ({totals.bytes:,} bytes); "
            f"caches purged for {totals.cache_purged:,}, failed for {totals.cache_failed:,}; "
            f"{totals.failed:,} object(s) could not be deleted."
        )
        if totals.failed:
            raise CommandError(
                f"{totals.failed} object(s) could not be deleted; they stay unmarked and "
                "the next run retries them."
            )
