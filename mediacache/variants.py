"""Variants on the registered model's rows: stored beside the upload, recorded through
the field map, and built for the voice notes stored before there were variants.

:mod:`mediacache.media.variants` makes a variant from the bytes at hand and knows no
model; this module puts it on a row of the model in ``MEDIACACHE["MODEL"]``:

* :func:`store_variant` writes it beside the upload's object, through the adapter of
  the variant field's own storage (``storage=``; the default storage's otherwise);
* :func:`recorded` names its values by the model's own fields (:class:`FieldMap`);
  what the model has no field for (``duration``, ``waveform``, ``media_info``) is
  left out;
* :class:`VariantBackfill` builds the missing Ogg Opus variants of stored voice notes
  (``manage.py build_media_variants``): each row gets its variant exactly as a new
  upload would, is updated only if it still has none, and its link's cached copy is
  dropped (:meth:`Engine.refresh`) so the link serves the variant from then on.

A model without a variant field has nowhere to record one: the backfill refuses it
(:class:`VariantsUnsupported`). A model without ``media_info`` cannot remember that a
row has no variant possible (a video, an undecodable file): such rows are tried again
on every run.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

from django.core.files.base import File
from django.db import models
from django.db.models import Q
from django.utils import timezone

from mediacache.core.objects import MediaObject
from mediacache.engine import Engine, get_engine
from mediacache.media.types import MAYBE_AUDIO_CONTAINERS, SniffedType
from mediacache.media.variants import Prepared, prepare, variant_key_for
from mediacache.registry import FieldMap, MediaModel, media_model
from mediacache.store import ObjectStore

logger = logging.getLogger("mediacache.variants")

Outcome = Literal["built", "passthrough", "none", "raced"]


class StoreWriteFailed(Exception):
    """The bytes could not be made durable: nothing was recorded."""


class VariantsUnsupported(Exception):
    """The registered model has no field to record a variant in, or no type to pick by."""


def field_store(registered: MediaModel, field: str | None, engine: Engine) -> ObjectStore:
    """The adapter of ``field``'s own storage; a field without one (a key kept in a plain
    text field), or no field, names objects beside the upload's."""
    model_fields = registered.model._meta
    storage = getattr(model_fields.get_field(field), "storage", None) if field else None
    if storage is None:
        storage = model_fields.get_field(registered.fields.file).storage  # type: ignore[union-attr]
    return engine.store_of(MediaObject("", "", "", 0, "", storage=storage))


def store_variant(stored_key: str, prepared: Prepared, *, store: ObjectStore | None = None) -> str:
    """Store the prepared variant beside the upload's object; returns its key ("" if none).

    ``store``: where to write it (default: the registered model's variant field's store).
    """
    if prepared.passthrough:
        return stored_key  # the upload already is the variant
    if prepared.path is None:
        return ""
    wanted = variant_key_for(stored_key, prepared.extension)
    if store is None:
        registered = media_model()
        store = field_store(registered, registered.fields.variant, get_engine())
    try:
        with open(prepared.path, "rb") as variant_file:
            store.write(wanted, variant_file)
    except Exception as exc:
        logger.error("[MEDIA] store write failed for %s: %r", wanted, exc)
        raise StoreWriteFailed(str(exc)) from exc
    return wanted


def recorded(
    prepared: Prepared, variant_key: str, fields: FieldMap | None = None
) -> dict[str, Any]:
    """The row's field values for ``prepared``, stored under ``variant_key``: each under the
    model's own field name (``fields``: the registered model's map); values the model has
    no field for are left out."""
    fields = fields or media_model().fields
    named = {getattr(fields, entry): value for entry, value in prepared.values(variant_key).items()}
    return {name: value for name, value in named.items() if name}


class VariantBackfill:
    """Building the missing voice-note variants of the registered model's rows."""

    def __init__(self, registered: MediaModel, engine: Engine) -> None:
        f = registered.fields
        label = registered.model._meta.label
        if f.variant is None:
            raise VariantsUnsupported(
                f"{label} has no variant field, so a variant could not be recorded: add a "
                "FileField (blank=True) for it and name it in "
                'MEDIACACHE["FIELDS"]["variant"] unless it is called variant '
                "(variant_content_type, variant_size, variant_sha256, duration, waveform "
                "and media_info are optional); until then /media/{hash} serves each "
                "upload as it came"
            )
        if f.content_type is None:
            raise VariantsUnsupported(
                f"{label} records no content type, so its voice notes cannot be told from "
                'other files: name that field in MEDIACACHE["FIELDS"]["content_type"]'
            )
        self.registered = registered
        self.engine = engine
        self.variant_field: str = f.variant
        self.type_field: str = f.content_type
        self.variant_store = field_store(registered, f.variant, engine)

    @classmethod
    def from_settings(cls) -> VariantBackfill:
        """The backfill of the model in ``MEDIACACHE["MODEL"]``, with this process's engine."""
        return cls(media_model(), get_engine())

    @property
    def remembers_failures(self) -> bool:
        """Whether a row with no variant possible is recorded (in ``media_info``) and skipped
        next time; without that field it is tried again on every run."""
        return self.registered.fields.media_info is not None

    def _without_variant(self) -> models.QuerySet[models.Model]:
        variant = self.variant_field
        return self.registered.queryset().filter(
            Q(**{variant: ""}) | Q(**{f"{variant}__isnull": True})
        )

    def candidates(self, *, retry_failed: bool = False) -> models.QuerySet[models.Model]:
        """Voice notes (audio, or a container that may hold only audio) without a variant,
        not purged, not expired, with no earlier verdict (``retry_failed``: or an error)."""
        f = self.registered.fields
        content_type = self.type_field
        audio = Q(**{f"{content_type}__startswith": "audio/"}) | Q(
            **{f"{content_type}__in": MAYBE_AUDIO_CONTAINERS}
        )
        rows = self._without_variant().filter(audio)
        if f.purged_at:
            rows = rows.filter(**{f"{f.purged_at}__isnull": True})
        if f.expires_at:
            rows = rows.exclude(**{f"{f.expires_at}__lte": timezone.now()})
        if f.media_info is None:
            return rows
        never_tried = Q(**{f"{f.media_info}__isnull": True})
        if retry_failed:
            return rows.filter(never_tried | Q(**{f"{f.media_info}__has_key": "error"}))
        return rows.filter(never_tried)

    def build(self, row: models.Model) -> Outcome:
        """Make the missing variant of one stored voice note: ``built``, ``passthrough``,
        ``none`` (no variant possible; the reason is kept in ``media_info``) or ``raced``
        (another run built it first). The link then serves the variant."""
        f = self.registered.fields
        stored = getattr(row, f.file)
        key: str = stored.name
        kind = SniffedType(getattr(row, self.type_field), key.rpartition(".")[2])
        with stored.storage.open(key, "rb") as opened:
            upload = File(opened, name=key)
            size = getattr(row, f.size) if f.size else None
            if size is not None:
                upload.size = size
            with prepare(upload, kind, strict=False, images=False) as prepared:
                variant_key = store_variant(key, prepared, store=self.variant_store)
                values = recorded(prepared, variant_key, f)
        if not values:  # nothing the model can record (no variant, no media_info)
            return "none"
        if not self._without_variant().filter(pk=row.pk).update(**values):
            if variant_key and variant_key != key:
                self._delete_quietly(variant_key)
            return "raced"
        media_hash = getattr(row, "media_hash", None)
        if media_hash and variant_key:
            self.engine.refresh(media_hash)
        if not variant_key:
            return "none"
        return "passthrough" if prepared.passthrough else "built"

    def _delete_quietly(self, key: str) -> None:
        try:
            self.variant_store.delete(key)
        except Exception as exc:
            logger.error("[MEDIA] could not delete stored object %s: %r", key, exc)
