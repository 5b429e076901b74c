"""``manage.py purge_expired_media``: delete what has expired, from every store, safely from cron.

The work is :mod:`mediacache.retention.purge` (on the model in
``MEDIACACHE["MODEL"]``); this command gives it options, output and an exit code:
1 when some object could not be deleted (its row stays unmarked and the next run
retries it), or when the model has no purged marker to record the work in.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from mediacache.retention.purge import ExpiredMediaPurge, PurgeTotals, PurgeUnsupported
from mediacache.store import StoreUnavailable


def _bytes(count: int | None) -> str:
    return "size not recorded" if count is None else f"{count:,} bytes"


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
        try:
            purge = ExpiredMediaPurge.from_settings()
            if dry_run:
                self._report_dry_run(purge)
                return
            purge.require_marker()
        except PurgeUnsupported as exc:
            raise CommandError(str(exc)) from exc
        for last_pk in purge.run(batch_size, on_failure=self._failed):
            if options["verbosity"] >= 2:
                self.stdout.write(f"  up to id {last_pk}: {purge.totals.purged:,} purged so far")
        self._report(purge.totals)

    def _failed(self, key: str, exc: StoreUnavailable) -> None:
        self.stderr.write(f"could not delete {key}: {exc}")

    def _report_dry_run(self, purge: ExpiredMediaPurge) -> None:
        pending = purge.pending(timezone.now())
        self.stdout.write(
            f"Dry run: {pending.rows:,} expired attachment(s) ({_bytes(pending.bytes)}) would "
            "be purged; nothing deleted."
        )
        try:
            purge.require_marker()
        except PurgeUnsupported as exc:
            self.stdout.write(f"A real run would refuse: {exc}.")

    def _report(self, totals: PurgeTotals) -> None:
        self.stdout.write(
            f"Purged {totals.purged:,} expired attachment(s) ({_bytes(totals.bytes)}); "
            f"caches purged for {totals.cache_purged:,}, failed for {totals.cache_failed:,}; "
            f"{totals.failed:,} object(s) could not be deleted."
        )
        if totals.failed:
            raise CommandError(
                f"{totals.failed} object(s) could not be deleted; they stay unmarked and "
                "the next run retries them."
            )
