"""``manage.py sweep_orphan_objects``: delete stored objects that no attachment points to.

The work is :mod:`mediacache.retention.sweep` (on the model in
``MEDIACACHE["MODEL"]``); this command gives it options, one line per orphan
(key, size, age), a summary, and exit code 1 when some orphan could not be deleted.
Safe to run from cron; ``--dry-run`` lists what it would delete.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from mediacache.retention.sweep import OrphanSweep, SweepTotals
from mediacache.store import MAX_BATCH, StoredObject

S3_MAX_DELETE = MAX_BATCH  # DeleteObjects takes at most 1,000 keys


class Command(BaseCommand):
    help = (
        "Delete stored objects under the key prefix that no attachment row points to and "
        "that are older than --min-age minutes (left by a crash between store and "
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
        try:
            sweep = OrphanSweep.from_settings(
                prefix=prefix, min_age=timedelta(minutes=min_age), batch_size=batch_size
            )
        except ValueError as exc:  # an empty prefix
            raise CommandError(str(exc)) from exc
        totals = sweep.run(dry_run=dry_run, on_orphan=self._list)
        self._report(totals, sweep.prefix, min_age, dry_run)

    def _list(self, obj: StoredObject) -> None:
        age = timezone.now() - obj.modified
        self.stdout.write(f"{obj.key}\t{obj.size}\t{int(age.total_seconds() // 60)} min old")

    def _report(self, totals: SweepTotals, prefix: str, min_age: int, dry_run: bool) -> None:
        done = "would be deleted" if dry_run else "deleted"
        self.stdout.write(
            f"{'Dry run: ' if dry_run else ''}{totals.orphans:,} orphan object(s) "
            f"({totals.bytes:,} bytes) {done}; scanned {totals.scanned:,} under {prefix!r}, "
            f"{totals.young:,} younger than {min_age} min left alone."
        )
        if totals.failed:
            raise CommandError(f"{totals.failed} orphan object(s) could not be deleted")
