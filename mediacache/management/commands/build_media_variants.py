"""``manage.py build_media_variants``: Ogg Opus variants for voice notes stored before them.

The work is :class:`mediacache.variants.VariantBackfill`, on the model in
``MEDIACACHE["MODEL"]``: it walks the rows that are audio (or a browser recording in
a WebM/MP4 container) with no variant and no earlier verdict, oldest first, in
batches by primary key; each gets its variant exactly as a new upload would (a child
process with ``MEDIA_TRANSCODE_TIMEOUT``), the row is updated only if it still has no
variant, and the cached copy behind its short link is dropped so the link serves the
variant from then on. Idempotent: a second run finds nothing to do. Files the decoder
cannot read keep their reason in ``media_info`` and are skipped next time
(``--retry-failed`` tries them again).

Exit code 1 when a variant could not be stored, when the model has no variant field
to record one in, or when PyAV (the decoder) is not installed.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from mediacache.media.variants import voice_decoder_missing
from mediacache.variants import StoreWriteFailed, VariantBackfill, VariantsUnsupported

BAR_WIDTH = 30


class Command(BaseCommand):
    help = (
        "Build the missing Ogg Opus variants of stored voice notes (audio and audio-only "
        "WebM/MP4 recordings). Idempotent; shows progress."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--batch-size", type=int, default=100, help="Rows per query (100).")
        parser.add_argument("--limit", type=int, default=0, help="Stop after N rows (0: all).")
        parser.add_argument("--dry-run", action="store_true", help="Count; convert nothing.")
        parser.add_argument(
            "--retry-failed",
            action="store_true",
            help="Also rows an earlier run could not decode.",
        )

    def handle(
        self,
        *args: Any,
        batch_size: int,
        limit: int,
        dry_run: bool,
        retry_failed: bool,
        **options: Any,
    ) -> None:
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1")
        try:
            backfill = VariantBackfill.from_settings()
        except VariantsUnsupported as exc:
            raise CommandError(str(exc)) from exc
        rows = backfill.candidates(retry_failed=retry_failed).order_by("pk")
        total = rows.count()
        if limit:
            total = min(total, limit)
        if dry_run or total == 0:
            suffix = " (dry run)" if dry_run else ""
            self.stdout.write(f"{total} voice note(s) without a variant{suffix}")
            return
        missing = voice_decoder_missing()
        if missing:
            raise CommandError(missing)
        counts = {"built": 0, "passthrough": 0, "none": 0, "raced": 0, "failed": 0}
        done, last_pk, started = 0, 0, time.monotonic()
        while done < total:
            batch = list(rows.filter(pk__gt=last_pk)[: min(batch_size, total - done)])
            if not batch:
                break
            for row in batch:
                last_pk = row.pk
                try:
                    counts[backfill.build(row)] += 1
                except (StoreWriteFailed, OSError) as exc:
                    counts["failed"] += 1
                    self.stderr.write(f"\n{row.pk}: {exc}")
                done += 1
                self._progress(done, total, counts, started)
        self.stdout.write("")
        verdicts = "see media_info" if backfill.remembers_failures else "not recorded: tried again"
        self.stdout.write(
            f"{counts['built']} encoded, {counts['passthrough']} already Ogg Opus mono, "
            f"{counts['none']} without one (video, or not decodable: {verdicts}), "
            f"{counts['raced']} done by another run, {counts['failed']} failed (store); "
            f"{time.monotonic() - started:.1f} s"
        )
        if counts["failed"]:
            raise CommandError(f"{counts['failed']} variant(s) could not be stored")

    def _progress(self, done: int, total: int, counts: dict[str, int], started: float) -> None:
        filled = BAR_WIDTH * done // total
        bar = "#" * filled + "-" * (BAR_WIDTH - filled)
        rate = done / max(time.monotonic() - started, 1e-6)
        line = f"[{bar}] {done}/{total} ({rate:.1f}/s)"
        interactive = getattr(self.stdout, "isatty", lambda: False)() or sys.stdout.isatty()
        if interactive:
            self.stdout.write("\r" + line, ending="")
        elif done == total or done % 50 == 0:
            self.stdout.write(line)
