"""When a row's short link expires, if it has no expiry yet: one rule for every path.

``save()`` (``mediacache.models.fill_short_link``) and the backfill
(``generate_media_hashes``) both give a row without an expiry one; both read it
from here, so a legacy row gets the same expiry whether a save or the backfill
reaches it first. The default never hands out a link that is dead on arrival:
upload time + retention would be, for a row older than the retention.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum


class ExpiryPolicy(StrEnum):
    FROM_NOW = "from-now"  # now + retention: a full retention from the day the link is made
    FROM_CREATED = "from-created"  # upload time + retention: already past for old rows
    NEVER = "never"  # no expiry: the link lives, and purge_expired_media keeps the object


DEFAULT_EXPIRY = ExpiryPolicy.FROM_NOW


def expiry_for(
    policy: ExpiryPolicy, *, now: datetime, retention: timedelta, created: datetime | None = None
) -> datetime | None:
    """The expiry a row without one gets; ``created`` is its upload time, if known
    (``from-created`` without it counts from now, as for a row saved just now)."""
    if policy is ExpiryPolicy.NEVER:
        return None
    if policy is ExpiryPolicy.FROM_CREATED and created is not None:
        return created + retention
    return now + retention
