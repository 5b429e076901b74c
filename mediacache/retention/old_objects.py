"""The objects an expiry rule would delete at once, counted before the rule is written.

A rule of N days expires, at the bucket's next lifecycle run, every object under
its prefix uploaded more than N days ago. For a host adopting the engine that can
be years of attachments its rows still reference, so ``apply_media_lifecycle``
counts them first and writes such a rule only when told to (``--yes``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from mediacache.store import ObjectStore


def now() -> datetime:
    """The clock the cutoff is read from: a function of its own, so a test can move it."""
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class OldObjects:
    """What a rule of ``days`` days over ``prefix`` would expire at once."""

    prefix: str  # as the bucket sees it: under the storage's ``location``
    days: int
    count: int
    bytes: int

    def describe(self) -> str:
        if not self.count:
            return f"no object under {self.prefix} is older than {self.days} days"
        return (
            f"{self.count:,} object(s) under {self.prefix} ({self.bytes:,} bytes) are "
            f"older than {self.days} days"
        )


def older_than(store: ObjectStore, key_prefix: str, days: int) -> OldObjects:
    """List ``key_prefix`` (the adapter adds the storage's ``location``, as the rule's
    prefix has it) and count the objects last modified more than ``days`` days ago."""
    cutoff = now() - timedelta(days=days)
    count = total = 0
    for page in store.list(key_prefix):
        for stored in page:
            if stored.modified < cutoff:
                count += 1
                total += stored.size
    return OldObjects(store.full_key(key_prefix), days, count, total)
