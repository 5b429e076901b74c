"""The short-link fields for a host's own attachment model.

``class Attachment(ShortLinkMixin, models.Model)``: the host's
``makemigrations`` adds the two fields exactly as existing deployments define
them, and ``save()`` gives each new row its hash and link. A model that already
has the fields (and cannot change base classes) gets the same behaviour from a
``pre_save`` handler once it is named in ``MEDIACACHE["MODEL"]``.
"""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError, models, transaction
from django.utils import timezone

from mediacache.core.expiry import DEFAULT_EXPIRY, expiry_for
from mediacache.core.hashes import new_media_hash
from mediacache.core.links import ShortLinked, short_url_for
from mediacache.core.settings import media_settings

_HASH_ATTEMPTS = 5


def fill_short_link(
    instance: ShortLinked, expires_field: str | None = None, created_field: str | None = None
) -> None:
    """Give ``instance`` a hash (if it has none) and its link, and an expiry (if unset) when
    the link is made: a new row, or a legacy row that gets its hash now.

    The expiry follows the backfill's default policy (``mediacache.core.expiry``), so a
    legacy row saved long after its upload gets a live link, not a dead one. A row that
    has its link keeps its expiry as it is: one the backfill left without
    (``--expires never``) is not given one by a later save."""
    adding = getattr(getattr(instance, "_state", None), "adding", True)
    making_link = adding or not instance.media_hash
    if making_link and expires_field and getattr(instance, expires_field, None) is None:
        created = getattr(instance, created_field, None) if created_field else None
        expiry = expiry_for(
            DEFAULT_EXPIRY,
            now=timezone.now(),
            retention=media_settings().retention,
            created=created,
        )
        setattr(instance, expires_field, expiry)
    if not instance.media_hash:
        instance.media_hash = new_media_hash()
    instance.short_url = short_url_for(instance.media_hash)


class ShortLinkMixin(models.Model):
    # NULL, not "", for "no hash yet": unique allows many NULLs but only one "".
    media_hash = models.CharField(max_length=32, unique=True, db_index=True, null=True, blank=True)
    short_url = models.CharField(max_length=255, null=True, blank=True)  # noqa: DJ001

    # Where the expiry (now + MEDIACACHE["RETENTION_DAYS"] for a row without one) and the
    # upload time live, if anywhere.
    media_expires_field: str | None = None
    media_created_field: str | None = None

    class Meta:
        abstract = True

    def save(self, *args: Any, **kwargs: Any) -> None:
        """Save with a short link; a new hash is drawn on the (rare) collision."""
        had_hash = bool(self.media_hash)
        for attempt in range(_HASH_ATTEMPTS):
            fill_short_link(self, self.media_expires_field, self.media_created_field)
            if had_hash:
                return super().save(*args, **kwargs)
            try:
                with transaction.atomic():
                    return super().save(*args, **kwargs)
            except IntegrityError:
                taken = type(self)._default_manager.filter(media_hash=self.media_hash).exists()
                self.media_hash = self.short_url = None
                if not taken or attempt == _HASH_ATTEMPTS - 1:
                    raise
        return None
