"""Which model holds the attachments, and how its fields map to a media object.

The host app names its model in ``MEDIACACHE["MODEL"]`` (``"app_label.Model"``)
and, where its field names differ from the defaults, maps them in
``MEDIACACHE["FIELDS"]``. The model needs ``media_hash`` and ``short_url``
(from :class:`mediacache.models.ShortLinkMixin`, or already there, as existing
deployments have them) and a file field; every other field is optional.
"""

from __future__ import annotations

import mimetypes
from dataclasses import dataclass, fields
from functools import lru_cache

from django.apps import apps
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import close_old_connections, models

from .objects import MediaObject


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


@dataclass(frozen=True)
class MediaModel:
    model: type[models.Model]
    fields: FieldMap

    def queryset(self) -> models.QuerySet:
        return self.model._default_manager.all()

    def _value(self, instance: models.Model, name: str | None):
        return getattr(instance, name) if name else None

    def media_object(self, instance: models.Model) -> MediaObject:
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
            media_hash=instance.media_hash or "",  # type: ignore[attr-defined]
            key=key,
            content_type=content_type,
            size=int(size),
            sha256=self._value(instance, f.sha256) or "",
            expires_at=expires_at.timestamp() if expires_at else None,
            filename=filename,
        )

    def loaded_fields(self) -> list[str]:
        names = [getattr(self.fields, f.name) for f in fields(self.fields)]
        return ["media_hash", *(n for n in names if n)]


@lru_cache(maxsize=1)
def media_model() -> MediaModel:
    config = settings.MEDIACACHE
    label = config.get("MODEL")
    if not label:
        raise ImproperlyConfigured('MEDIACACHE["MODEL"] must name the attachment model')
    try:
        model = apps.get_model(label)
    except (LookupError, ValueError) as exc:
        raise ImproperlyConfigured(f'MEDIACACHE["MODEL"]={label!r}: {exc}') from exc
    field_map = FieldMap(**config.get("FIELDS", {}))
    names = {f.name for f in model._meta.get_fields()}
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

    Called from the engine's thread pool, outside any request:
    ``close_old_connections`` around the query gives those long-lived threads
    the connection hygiene of a request (a broken or too-old connection is
    dropped before; with ``CONN_MAX_AGE=0`` the connection is closed after).
    """
    registered = media_model()
    close_old_connections()
    try:
        row = (
            registered.queryset()
            .only(*registered.loaded_fields())
            .filter(media_hash=media_hash)
            .first()
        )
        return registered.media_object(row) if row is not None else None
    finally:
        close_old_connections()
