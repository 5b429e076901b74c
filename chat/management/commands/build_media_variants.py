"""``manage.py build_media_variants``: Ogg Opus variants for voice notes stored before them.

Walks the attachments that are audio (or a browser recording in a WebM/MP4
container) with no variant and no earlier verdict, oldest first, in batches by
primary key; each gets its variant exactly as a new upload would (a child process
with ``MEDIA_TRANSCODE_TIMEOUT``), the row is updated only if it still has no
variant, and the cached copy behind its short link is purged so the link serves
the variant from then on. Idempotent: a second run finds nothing to do. Files the
decoder cannot read keep their reason in ``media_info`` and are skipped next time
(``--retry-failed`` tries them again).
"""

from __future__ import annotations

import sys
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db.models import Q, QuerySet
from django.utils import timezone

from chat.models import MessageAttachment
from chat.services import StoreWriteFailed, build_variant
from mediacache.media.transcode import MAYBE_AUDIO_CONTAINERS

BAR_WIDTH = 30


def candidates(*, retry_failed: bool = False) -> QuerySet[MessageAttachment]:
    audio = Q(mime_type__startswith="audio/") | Q(mime_type__in=MAYBE_AUDIO_CONTAINERS)
    rows = MessageAttachment.objects.filter(audio, variant="", purged_at__isnull=True).exclude(
        expires_at__lte=timezone.now()
    )
    if retry_failed:
        return rows.filter(Q(media_info__isnull=True) | Q(media_info__has_key="error"))
    return rows.filter(media_info__isnull=True)


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
        rows = candidates(retry_failed=retry_failed).order_by("pk")
        total = rows.count()
        if limit:
            total = min(total, limit)
        if dry_run or total == 0:
            suffix = " (dry run)" if dry_run else ""
            self.stdout.write(f"{total} voice note(s) without a variant{suffix}")
            return
        counts = {"built": 0, "passthrough": 0, "none": 0, "raced": 0, "failed": 0}
        done, last_pk, started = 0, 0, time.monotonic()
        while done < total:
            batch = list(rows.filter(pk__gt=last_pk)[: min(batch_size, total - done)])
            if not batch:
                break
            for attachment in batch:
                last_pk = attachment.pk
                try:
                    counts[build_variant(attachment)] += 1
                except (StoreWriteFailed, OSError) as exc:
                    counts["failed"] += 1
                    self.stderr.write(f"\n{attachment.pk}: {exc}")
                done += 1
                self._progress(done, total, counts, started)
        self.stdout.write("")
        self.stdout.write(
            f"{counts['built']} encoded, {counts['passthrough']} already Ogg Opus mono, "
            f"{counts['none']} without one (video, or not decodable: see media_info), "
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
