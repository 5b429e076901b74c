"""Which model holds the attachments, and how its fields map to a media object.

The host app names its model in ``MEDIACACHE["MODEL"]`` (``"app_label.Model"``)
and, where its field names differ from the defaults, maps them in
``MEDIACACHE["FIELDS"]``. The model needs ``media_hash`` and ``short_url``
(from :class:`mediacache.models.ShortLinkMixin`, or already there, as existing
deployments have them) and a file field; every other field is optional.

A model may also carry a WhatsApp-ready *variant* of each upload (a voice note as
Ogg Opus, an image as JPEG): ``variant`` (file), ``variant_mime_type``,
``variant_size``, ``variant_sha256``. Where it has them, ``/media/{hash}``
serves the variant and ``/media/{hash}/original`` the upload as it came; a model
without them (and without a mapping naming them) simply has no variants.

What decoding found out may be kept too (the variant's backfill and the
gateway read it): ``duration_seconds``, ``waveform`` (a voice note's loudness
envelope) and ``media_info`` (a JSON field: what the decoder saw, or why it
could not decode; it is also how ``build_media_variants`` remembers a row it
could make no variant of). A model without them keeps none of it.

``purged_at`` (a nullable date) marks a row whose objects ``purge_expired_media``
deleted after expiry; a model without one (and no mapping naming one) has None
there, and the purge refuses to run on it (see :mod:`mediacache.retention.purge`).
"""

from __future__ import annotations

import mimetypes
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from datetime import datetime
from functools import lru_cache
from typing import Any

from django.apps import apps
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import close_old_connections, models

from mediacache.core.filetypes import extension_for
from mediacache.core.hashes import original_key, split_media_key
from mediacache.core.objects import MediaObject

# Optional fields: dropped (None) when the model lacks them and FIELDS does not name them.
VARIANT_FIELDS = ("variant", "variant_content_type", "variant_size", "variant_sha256")
DECODED_FIELDS = ("duration", "waveform", "media_info")
DROPPED_WHEN_ABSENT = (*VARIANT_FIELDS, *DECODED_FIELDS, "purged_at")
# Fields only the purge and the variants' backfill read: the resolver does not load them
# for every miss.
NOT_SERVED = frozenset({"purged_at", *DECODED_FIELDS})


@dataclass(frozen=True)
class FieldMap:
    """Names of the model's fields; None where the model has no such field."""

    file: str = "file"
    content_type: str | None = "mime_type"
    size: str | None = "size"
    sha256: str | None = "sha256"
    expires_at: str | None = "expires_at"
    filename: str | None = "original_filename"
    created_at: str | None = "created_at"
    variant: str | None = "variant"
    variant_content_type: str | None = "variant_mime_type"
    variant_size: str | None = "variant_size"
    variant_sha256: str | None = "variant_sha256"
    duration: str | None = "duration_seconds"
    waveform: str | None = "waveform"
    media_info: str | None = "media_info"
    purged_at: str | None = "purged_at"


@dataclass(frozen=True)
class MediaModel:
    model: type[models.Model]
    fields: FieldMap

    def queryset(self) -> models.QuerySet[models.Model]:
        return self.model._default_manager.all()

    def _value(self, instance: models.Model, name: str | None) -> Any:
        """The row's value of field ``name`` (None for a field it does not have)."""
        return getattr(instance, name) if name else None

    def short_url(self, instance: models.Model) -> str:
        """The row's short link, "" when it has none yet."""
        url: str = self._value(instance, "short_url") or ""
        return url

    def uploaded_at(self, instance: models.Model) -> float | None:
        """The row's upload time (Unix seconds), served as Last-Modified; None without one."""
        created = self._value(instance, self.fields.created_at)
        return created.timestamp() if isinstance(created, datetime) else None

    def variant_key(self, instance: models.Model) -> str:
        """The variant's object key, or "" when the row has none."""
        variant = self._value(instance, self.fields.variant)  # a FieldFile or a plain key
        return str(getattr(variant, "name", variant) or "") if variant else ""

    def media_object(self, instance: models.Model, *, original: bool = False) -> MediaObject:
        """What ``/media/{hash}`` serves: the variant when there is one, else the upload.

        ``original=True``: the upload itself, under the key ``{hash}/original``.
        """
        variant_key = "" if original else self.variant_key(instance)
        if variant_key:
            return self._variant_object(instance, variant_key)
        obj = self._original_object(instance)
        if original and obj.media_hash:
            obj = replace(obj, media_hash=original_key(obj.media_hash))
        return obj

    def _variant_object(self, instance: models.Model, key: str) -> MediaObject:
        f = self.fields
        content_type = self._value(instance, f.variant_content_type) or (
            mimetypes.guess_type(key)[0] or "application/octet-stream"
        )
        size = self._value(instance, f.variant_size)
        if size is None:
            size = self._value(instance, f.variant).size
        expires_at = self._value(instance, f.expires_at)
        original_name = self._value(instance, f.filename) or key.rsplit("/", 1)[-1]
        stem = original_name.rsplit(".", 1)[0] if "." in original_name else original_name
        return MediaObject(
            media_hash=self._value(instance, "media_hash") or "",
            key=key,
            content_type=content_type,
            size=int(size),
            sha256=self._value(instance, f.variant_sha256) or "",
            expires_at=expires_at.timestamp() if expires_at else None,
            uploaded_at=self.uploaded_at(instance),
            filename=f"{stem or 'media'}{extension_for(content_type)}",
            storage=getattr(self._value(instance, f.variant), "storage", None),
        )

    def _original_object(self, instance: models.Model) -> MediaObject:
        f = self.fields
        file = getattr(instance, f.file)
        key = file.name
        content_type = self._value(instance, f.content_type) or (
            mimetypes.guess_type(key)[0] or "application/octet-stream"
        )
        size = self._value(instance, f.size)
        if size is None:
            size = file.size  # asks the store once; the object is then cached
        expires_at = self._value(instance, f.expires_at)
        filename = self._value(instance, f.filename) or key.rsplit("/", 1)[-1]
        return MediaObject(
            media_hash=self._value(instance, "media_hash") or "",
            key=key,
            content_type=content_type,
            size=int(size),
            sha256=self._value(instance, f.sha256) or "",
            expires_at=expires_at.timestamp() if expires_at else None,
            uploaded_at=self.uploaded_at(instance),
            filename=filename,
            storage=file.storage,
        )

    def loaded_fields(self) -> list[str]:
        names = [
            getattr(self.fields, f.name) for f in fields(self.fields) if f.name not in NOT_SERVED
        ]
        return ["media_hash", *(n for n in names if n)]


@lru_cache(maxsize=1)
def media_model() -> MediaModel:
    config: Mapping[str, Any] = settings.MEDIACACHE
    label = config.get("MODEL")
    if not label:
        raise ImproperlyConfigured('MEDIACACHE["MODEL"] must name the attachment model')
    try:
        model = apps.get_model(label)
    except (LookupError, ValueError) as exc:
        raise ImproperlyConfigured(f'MEDIACACHE["MODEL"]={label!r}: {exc}') from exc
    configured = config.get("FIELDS", {})
    names = {f.name for f in model._meta.get_fields()}
    defaults = FieldMap()
    absent = {
        n: None
        for n in DROPPED_WHEN_ABSENT
        if n not in configured and getattr(defaults, n) not in names
    }
    field_map = FieldMap(**{**absent, **configured})
    missing = [n for n in ("media_hash", "short_url", field_map.file) if n not in names]
    optional = [getattr(field_map, f.name) for f in fields(field_map)]
    missing += [n for n in optional if n and n not in names]
    if missing:
        raise ImproperlyConfigured(
            f"{label} has no field(s) {', '.join(missing)}: add ShortLinkMixin for media_hash "
            f'and short_url, or map your names in MEDIACACHE["FIELDS"] (None for absent ones)'
        )
    return MediaModel(model, field_map)


def resolve_media(media_hash: str) -> MediaObject | None:
    """The default resolver: the registered model's row with this hash.

    ``media_hash`` may be ``{hash}/original`` (the path ``/media/{hash}/original``):
    then the upload itself, not its variant.

    Called from the engine's thread pool, outside any request:
    ``close_old_connections`` around the query gives those long-lived threads
    the connection hygiene of a request (a broken or too-old connection is
    dropped before; with ``CONN_MAX_AGE=0`` the connection is closed after).
    """
    registered = media_model()
    media_hash, original = split_media_key(media_hash)
    close_old_connections()
    try:
        row = (
            registered.queryset()
            .only(*registered.loaded_fields())
            .filter(media_hash=media_hash)
            .first()
        )
        return registered.media_object(row, original=original) if row is not None else None
    finally:
        close_old_connections()
