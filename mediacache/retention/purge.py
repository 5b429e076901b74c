"""Free the bytes of expired attachments: purge their cached copies, delete their
objects, then mark their rows.

The serving path already answers 404 for an expired attachment; this frees the
bytes. With a local directory store it is the only thing that does (there are no
lifecycle rules on a disk). On S3 the bucket's lifecycle rule remains the primary
mechanism, but S3 runs it asynchronously (often a day or more late); deleting here
too makes "expired" mean "gone" on the day, and a DELETE of a key the rule already
removed is a harmless no-op.

It works on the model registered in ``MEDIACACHE["MODEL"]``, through its field map:
``expires_at`` finds the expired rows, ``file`` and ``variant`` name their objects
(each deleted through its own field's storage), ``size`` adds up the bytes when the
model records it, and ``purged_at`` marks a row once its objects are gone. A row is
marked only then, so a run that fails half-way is finished by the next one; rows
already marked are never looked at again.

A model without a purged marker is refused (:class:`PurgeUnsupported`), not purged
unmarked: S3 answers a DELETE of a missing key with success, so without a marker
nothing tells a row that is done from one to do, and every run would delete every
expired row's objects again, for ever. Add a nullable ``DateTimeField`` and name it
in ``MEDIACACHE["FIELDS"]["purged_at"]``; until then the bucket's lifecycle rule
(``apply_media_lifecycle``) frees the bytes on S3.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import models
from django.db.models import Sum
from django.utils import timezone

from mediacache.core.hashes import original_key
from mediacache.core.settings import media_settings
from mediacache.engine import Engine, get_engine
from mediacache.registry import MediaModel, media_model
from mediacache.retention.objects import FieldStores
from mediacache.store import ObjectMissing, StoreUnavailable

logger = logging.getLogger("mediacache.retention")

# pk, object key, variant key, media hash, size (None where the model records none)
Row = tuple[int, str, str, str | None, int | None]
FailureHandler = Callable[[str, StoreUnavailable], None]


class PurgeUnsupported(Exception):
    """The registered model lacks a field the purge needs (its expiry or a purged marker)."""


@dataclass
class PurgeTotals:
    purged: int = 0
    bytes: int | None = 0  # None: the model records no size
    cache_purged: int = 0
    cache_failed: int = 0
    failed: int = 0


@dataclass(frozen=True)
class Pending:
    """What a run would purge now: rows, and their bytes (None: the model records no size)."""

    rows: int
    bytes: int | None


def _ignore(key: str, exc: StoreUnavailable) -> None:
    pass


class ExpiredMediaPurge:
    """One purge run over the registered model's expired rows."""

    def __init__(self, registered: MediaModel, engine: Engine, *, key_prefix: str = "") -> None:
        if registered.fields.expires_at is None:
            raise PurgeUnsupported(
                f"{registered.model._meta.label} has no expiry field, so nothing of it "
                'expires: name one in MEDIACACHE["FIELDS"]["expires_at"]'
            )
        self.registered = registered
        self.engine = engine
        self.stores = FieldStores(registered, key_prefix=key_prefix)
        self.totals = PurgeTotals(bytes=0 if registered.fields.size else None)

    @classmethod
    def from_settings(cls) -> ExpiredMediaPurge:
        """The purge of the model in ``MEDIACACHE["MODEL"]``, with this process's engine."""
        return cls(media_model(), get_engine(), key_prefix=media_settings().KEY_PREFIX)

    @property
    def marker(self) -> str | None:
        return self.registered.fields.purged_at

    def require_marker(self) -> str:
        """The purged marker's field name; PurgeUnsupported when the model has none."""
        if self.marker is None:
            label = self.registered.model._meta.label
            raise PurgeUnsupported(
                f"{label} has no purged marker, so a purge could not tell done rows from "
                "rows to do and would delete every expired row's objects again on every "
                "run: add a nullable DateTimeField to it and name it in "
                'MEDIACACHE["FIELDS"]["purged_at"] (on S3, apply_media_lifecycle frees '
                "the bytes meanwhile)"
            )
        return self.marker

    def expired(self, now: datetime) -> models.QuerySet[models.Model]:
        """Rows the serving path already treats as expired and not marked purged yet.

        Rows without an expiry never expire when served, so they are left alone here
        too (``generate_media_hashes`` gives legacy rows their expiry).
        """
        expires_at = self.registered.fields.expires_at
        conditions: dict[str, Any] = {f"{expires_at}__lte": now}
        if self.marker:
            conditions[f"{self.marker}__isnull"] = True
        return self.registered.queryset().filter(**conditions)

    def pending(self, now: datetime) -> Pending:
        rows = self.expired(now)
        size = self.registered.fields.size
        total = (rows.aggregate(total=Sum(size))["total"] or 0) if size else None
        return Pending(rows.count(), total)

    def run(self, batch_size: int, on_failure: FailureHandler = _ignore) -> Iterator[int]:
        """Purge batch after batch, yielding the last primary key of each; the counts
        grow in :attr:`totals`. ``on_failure(key, error)``: an object the store could
        not delete (its row stays unmarked for the next run). Refuses (at once, before
        any batch) a model without a purged marker."""
        if batch_size < 1:
            raise ValueError("batch size must be at least 1")
        self.require_marker()
        return self._batches(self.expired(timezone.now()), batch_size, on_failure)

    def _batches(
        self,
        queryset: models.QuerySet[models.Model],
        batch_size: int,
        on_failure: FailureHandler,
    ) -> Iterator[int]:
        last_pk = 0
        while rows := self._next_batch(queryset, last_pk, batch_size):
            last_pk = rows[-1][0]
            self._purge_batch(rows, on_failure)
            yield last_pk

    def _next_batch(
        self, queryset: models.QuerySet[models.Model], last_pk: int, size: int
    ) -> list[Row]:
        """Walk by primary key: each batch is a short, indexed query; no long transaction."""
        f = self.registered.fields
        columns = ["pk", f.file, f.variant, "media_hash", f.size]
        values = (
            queryset.filter(pk__gt=last_pk)
            .order_by("pk")
            .values_list(*(c for c in columns if c))[:size]
        )
        return [self._row(v) for v in values]

    def _row(self, values: tuple[Any, ...]) -> Row:
        """A values_list tuple as a Row, with "" and None for the fields the model lacks."""
        f = self.registered.fields
        found = iter(values)
        pk, key = next(found), next(found)
        variant = next(found) if f.variant else ""
        media_hash = next(found)
        size = next(found) if f.size else None
        return pk, key or "", variant or "", media_hash, size

    def _purge_batch(self, rows: list[Row], on_failure: FailureHandler) -> None:
        f = self.registered.fields
        totals = self.totals
        gone: list[int] = []
        for pk, key, variant_key, media_hash, size in rows:
            if media_hash:
                # Redis first: it is shared by every process, and an entry's own TTL
                # already ends at expiry, so this only shortens the tail. A variant's
                # link has its original cached apart, at /media/{hash}/original.
                if variant_key:
                    self.engine.purge(original_key(media_hash))
                if self.engine.purge(media_hash):
                    totals.cache_purged += 1
                else:
                    totals.cache_failed += 1
            # The variant first: a row stays unmarked until its original is gone too,
            # so a failed run never leaves a variant nobody will delete.
            objects = [(f.variant or f.file, variant_key), (f.file, key)]
            # The same key in the same store once (a variant may be the upload itself).
            targets = {(id(self.stores.of(n)), k): (n, k) for n, k in objects if k}
            deleted = [self._delete(n, k, on_failure) for n, k in targets.values()]
            if not all(deleted):
                totals.failed += 1
                continue
            gone.append(pk)
            if totals.bytes is not None:
                totals.bytes += size or 0
        marker = self.require_marker()
        totals.purged += (
            self.registered.queryset()
            .filter(pk__in=gone, **{f"{marker}__isnull": True})
            .update(**{marker: timezone.now()})
        )

    def _delete(self, field: str, key: str, on_failure: FailureHandler) -> bool:
        """Delete one object; True when it is gone (including "was already gone")."""
        try:
            self.stores.of(field).delete(key)
        except ObjectMissing:
            return True
        except StoreUnavailable as exc:
            logger.error("[MEDIA] purge: could not delete %s: %s", key, exc)
            on_failure(key, exc)
            return False
        return True
