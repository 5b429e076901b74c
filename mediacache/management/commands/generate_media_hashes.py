"""``manage.py generate_media_hashes``: short links for rows from before short links existed.

Safe while the service serves: every write is ``... WHERE media_hash IS NULL``,
so a row that got its hash meanwhile (an admin save, a second run) is skipped,
never overwritten, and nothing that already has a hash is touched. Resumable
without state: a stopped run leaves hashed rows behind it, and the next run only
sees the rest. Batches walk the primary key, so each is a short transaction.

A row without an expiry gets one by ``--expires`` (``mediacache.core.expiry``): by
default now + retention, the same as ``save()`` gives it, because upload time +
retention is already past for a row older than the retention, and its new link
would be dead on arrival.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from django.apps import apps
from django.core.management.base import BaseCommand, CommandError, CommandParser, OutputWrapper
from django.db import IntegrityError, transaction
from django.db.models import CharField, DateTimeField, F, Model, Q, QuerySet, Value
from django.db.models.expressions import Combinable
from django.db.models.functions import Coalesce, Concat
from django.utils import timezone

from mediacache.core.expiry import DEFAULT_EXPIRY, ExpiryPolicy
from mediacache.core.hashes import new_media_hash
from mediacache.core.links import short_url_for
from mediacache.core.settings import media_settings
from mediacache.registry import FieldMap, media_model

_HASH_ATTEMPTS = 5


class Progress:
    """``[#####.....] 5,000/10,000 rows, 8,300 rows/s``: redrawn in place on a terminal,
    one line per batch otherwise (cron mail, CI logs)."""

    def __init__(self, out: OutputWrapper, total: int, width: int = 30) -> None:
        self.out = out
        self.total = total
        self.width = width
        self.started = time.monotonic()
        self.tty = out.isatty()

    def line(self, done: int) -> str:
        total = max(self.total, done)
        filled = self.width if total == 0 else self.width * done // total
        rate = done / max(time.monotonic() - self.started, 1e-6)
        bar = "#" * filled + "." * (self.width - filled)
        return f"[{bar}] {done:,}/{total:,} rows, {rate:,.0f} rows/s"

    def update(self, done: int) -> None:
        if self.tty:
            self.out.write("\r" + self.line(done), ending="")
            self.out.flush()
        else:
            self.out.write(self.line(done))

    def finish(self) -> None:
        if self.tty:
            self.out.write("")


@dataclass(frozen=True)
class Target:
    """The model to backfill and where its expiry and upload time live (if anywhere)."""

    model: type[Model]
    expires_at: str | None
    created_at: str | None

    @property
    def rows(self) -> QuerySet[Model]:
        return self.model._default_manager.all()


def target_for(label: str | None) -> Target:
    registered = media_model()
    if label is None or label.lower() == registered.model._meta.label_lower:
        f = registered.fields
        return Target(registered.model, f.expires_at, f.created_at)
    try:
        model = apps.get_model(label)
    except (LookupError, ValueError) as exc:
        raise CommandError(f"--model {label!r}: {exc}") from exc
    names = {f.name for f in model._meta.get_fields()}
    if not {"media_hash", "short_url"} <= names:
        raise CommandError(f"{label} has no media_hash/short_url fields (use ShortLinkMixin)")
    defaults = FieldMap()
    return Target(
        model,
        defaults.expires_at if defaults.expires_at in names else None,
        defaults.created_at if defaults.created_at in names else None,
    )


def rows_without_hash(target: Target) -> QuerySet[Model]:
    return target.rows.filter(media_hash__isnull=True)


def rows_with_stale_url(target: Target) -> QuerySet[Model]:
    """Rows whose short_url is not ``PUBLIC_BASE_URL/media/<hash>`` (computed in the database)."""
    # django-stubs types alias() on a model it does not know statically as Any.
    aliased: QuerySet[Model] = target.rows.filter(media_hash__isnull=False).alias(
        expected_url=expected_url()
    )
    return aliased.filter(Q(short_url__isnull=True) | ~Q(short_url=F("expected_url")))


def expected_url() -> Concat:
    # short_url_for("") is the base and "/media/": one definition of the URL shape.
    return Concat(Value(short_url_for("")), F("media_hash"), output_field=CharField())


def expiry_value(target: Target, policy: ExpiryPolicy, now: datetime) -> Combinable | None:
    """The expiry a row without one gets, as the database computes it for the batch
    (``mediacache.core.expiry.expiry_for`` per row); None: nothing to write."""
    if target.expires_at is None or policy is ExpiryPolicy.NEVER:
        return None
    retention = media_settings().retention
    from_now = Value(now + retention, output_field=DateTimeField())
    if policy is ExpiryPolicy.FROM_CREATED and target.created_at:
        return Coalesce(F(target.created_at) + retention, from_now, output_field=DateTimeField())
    return from_now


class Command(BaseCommand):
    help = (
        "Give every attachment without a media hash its hash and short URL (and its expiry, "
        "if it has none: see --expires). Batched, resumable, safe while the service runs. "
        "With --rebuild-urls, also rewrite short_url of every row to the current "
        "PUBLIC_BASE_URL."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--model",
            help='The attachment model, "app_label.Model" (default: MEDIACACHE["MODEL"]).',
        )
        parser.add_argument(
            "--batch-size", type=int, default=1000, help="Rows per transaction (1000)."
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="Count what would change; write nothing."
        )
        parser.add_argument(
            "--expires",
            choices=[policy.value for policy in ExpiryPolicy],
            default=DEFAULT_EXPIRY.value,
            help="The expiry of a row that has none: from-now (default) = now + "
            "MEDIA_RETENTION_DAYS, as save() gives it, so every new link is live; "
            "from-created = upload time + retention, so rows older than the retention get "
            "links that answer 404 at once (pair it with a bucket rule that expires their "
            "objects); never = no expiry, the link and the object are kept until deleted. "
            "A row with an expiry keeps it.",
        )
        parser.add_argument(
            "--rebuild-urls",
            action="store_true",
            help="Also rewrite short_url of rows that have a hash, where it differs from "
            "PUBLIC_BASE_URL/media/<hash> (after PUBLIC_BASE_URL changed).",
        )

    def handle(
        self,
        *args: Any,
        model: str | None,
        batch_size: int,
        dry_run: bool,
        expires: str,
        rebuild_urls: bool,
        **options: Any,
    ) -> None:
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1")
        target = target_for(model)
        policy = ExpiryPolicy(expires)
        self.stdout.write(f"{target.model._meta.label}; short URLs: {short_url_for('<hash>')}")
        self.stdout.write(_expiry_line(target, policy))
        if dry_run:
            self._dry_run(target, policy, rebuild_urls)
            return
        self._backfill(target, batch_size, expiry_value(target, policy, timezone.now()))
        if rebuild_urls:
            self._rebuild_urls(target, batch_size)

    # --- hashes -----------------------------------------------------------------------

    def _backfill(self, target: Target, batch_size: int, expiry: Combinable | None) -> None:
        queryset = rows_without_hash(target)
        total = queryset.count()
        self.stdout.write(f"{total:,} row(s) without a media hash.")
        progress = Progress(self.stdout, total)
        hashed = skipped = retried = expiries = 0
        last_pk = 0
        while pks := _next_pks(queryset, last_pk, batch_size):
            last_pk = pks[-1]
            batch = _hash_batch(target, pks, expiry)
            hashed += batch.updated
            skipped += len(pks) - batch.updated
            retried += batch.retried
            expiries += batch.expiries
            progress.update(hashed + skipped)
        progress.finish()
        self.stdout.write(
            self.style.SUCCESS(
                f"Hashed {hashed:,} row(s); {skipped:,} got a hash elsewhere meanwhile "
                f"(left as they were); {retried:,} retried one by one after a collision; "
                f"expiry set on {expiries:,}."
            )
        )

    # --- URLs -------------------------------------------------------------------------

    def _rebuild_urls(self, target: Target, batch_size: int) -> None:
        queryset = rows_with_stale_url(target)
        total = queryset.count()
        self.stdout.write(f"{total:,} short URL(s) to rewrite.")
        progress = Progress(self.stdout, total)
        rewritten = 0
        last_pk = 0
        while pks := _next_pks(queryset, last_pk, batch_size):
            last_pk = pks[-1]
            rewritten += target.rows.filter(pk__in=pks, media_hash__isnull=False).update(
                short_url=expected_url()
            )
            progress.update(rewritten)
        progress.finish()
        self.stdout.write(self.style.SUCCESS(f"Rewrote {rewritten:,} short URL(s)."))

    def _dry_run(self, target: Target, policy: ExpiryPolicy, rebuild_urls: bool) -> None:
        missing = rows_without_hash(target)
        expiries = (
            missing.filter(**{f"{target.expires_at}__isnull": True}).count()
            if expiry_value(target, policy, timezone.now()) is not None
            else 0
        )
        self.stdout.write(
            f"Dry run: {missing.count():,} row(s) without a media hash would get one "
            f"({expiries:,} also an expiry)."
        )
        if rebuild_urls:
            stale = rows_with_stale_url(target).count()
            self.stdout.write(f"Dry run: {stale:,} short URL(s) would be rewritten.")
        self.stdout.write("Nothing written.")


class BatchResult(NamedTuple):
    updated: int  # rows that got their hash from this batch
    retried: int  # rows retried one by one after a collision
    expiries: int  # rows that also got an expiry


def _hash_batch(target: Target, pks: list[int], expiry: Combinable | None) -> BatchResult:
    """One UPDATE for the batch; on a (128-bit, so rare) collision, row by row.

    The expiry is filled in the same transaction, so a run stopped at any point
    never leaves a row with a hash but without an expiry (a rerun would skip it).
    """
    rows = [_with_new_hash(target, pk) for pk in pks]
    try:
        with transaction.atomic():
            updated = rows_without_hash(target).bulk_update(rows, ["media_hash", "short_url"])
            return BatchResult(updated, 0, _fill_expiry(target, pks, expiry))
    except IntegrityError:
        with transaction.atomic():
            updated = sum(_hash_one(target, pk) for pk in pks)
            return BatchResult(updated, len(pks), _fill_expiry(target, pks, expiry))


def _next_pks(queryset: QuerySet[Model], last_pk: int, size: int) -> list[int]:
    return list(queryset.filter(pk__gt=last_pk).order_by("pk").values_list("pk", flat=True)[:size])


def _with_new_hash(target: Target, pk: int) -> Model:
    media_hash = new_media_hash()
    return target.model(pk=pk, media_hash=media_hash, short_url=short_url_for(media_hash))


def _hash_one(target: Target, pk: int) -> int:
    """Hash one row, drawing again on a collision; 0 if it got a hash elsewhere."""
    for _ in range(_HASH_ATTEMPTS):
        media_hash = new_media_hash()
        try:
            with transaction.atomic():
                return (
                    rows_without_hash(target)
                    .filter(pk=pk)
                    .update(media_hash=media_hash, short_url=short_url_for(media_hash))
                )
        except IntegrityError:
            continue
    raise CommandError(f"could not find a free media hash for row {pk}")


def _fill_expiry(target: Target, pks: list[int], expiry: Combinable | None) -> int:
    """Legacy rows may lack an expiry: give them the policy's (``expiry_value``).

    Only where it is NULL, so nothing set is overwritten.
    """
    if expiry is None or target.expires_at is None:
        return 0
    return target.rows.filter(pk__in=pks, **{f"{target.expires_at}__isnull": True}).update(
        **{target.expires_at: expiry}
    )


def _expiry_line(target: Target, policy: ExpiryPolicy) -> str:
    if target.expires_at is None:
        return "Expiry: the model has no expiry field; links do not expire."
    days = media_settings().RETENTION_DAYS
    if policy is ExpiryPolicy.NEVER:
        meaning = "none: the link and the object are kept until deleted"
    elif policy is ExpiryPolicy.FROM_CREATED and target.created_at:
        meaning = (
            f"upload time + {days} days (rows uploaded before that get links that answer "
            "404 at once)"
        )
    else:
        meaning = f"now + {days} days"
    return f"Expiry of rows without one ({policy.value}): {meaning}."
