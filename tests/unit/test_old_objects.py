"""Counting what a rule would expire at once, on a real directory whose files are made old."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

from django.core.files.storage import FileSystemStorage

from mediacache.retention import old_objects
from mediacache.store import store_for

DAY = 24 * 3600


def put(root, key: str, size: int, age_days: float) -> None:
    path = root / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    when = datetime.now(UTC).timestamp() - age_days * DAY
    os.utime(path, (when, when))


def test_counts_only_objects_older_than_the_retention_under_the_prefix(tmp_path):
    put(tmp_path, "chat/2023/01/01/a.ogg", 100, age_days=900)
    put(tmp_path, "chat/2025/06/01/b.jpg", 20, age_days=31)
    put(tmp_path, "chat/2026/01/01/c.ogg", 7, age_days=29)  # inside the retention: kept
    put(tmp_path, "logs/old.txt", 5, age_days=900)  # not under the prefix
    store = store_for(FileSystemStorage(location=tmp_path))

    found = old_objects.older_than(store, "chat/", 30)

    assert (found.prefix, found.days, found.count, found.bytes) == ("chat/", 30, 2, 120)
    assert found.describe() == "2 object(s) under chat/ (120 bytes) are older than 30 days"


def test_the_cutoff_reads_the_moveable_clock(tmp_path, monkeypatch):
    put(tmp_path, "chat/new.ogg", 3, age_days=0)
    store = store_for(FileSystemStorage(location=tmp_path))
    assert old_objects.older_than(store, "chat/", 30).count == 0
    later = datetime.now(UTC) + timedelta(days=31)
    monkeypatch.setattr(old_objects, "now", lambda: later)
    assert old_objects.older_than(store, "chat/", 30).count == 1


def test_nothing_old_is_said_plainly(tmp_path):
    store = store_for(FileSystemStorage(location=tmp_path))
    found = old_objects.older_than(store, "chat/", 30)
    assert found.count == found.bytes == 0
    assert found.describe() == "no object under chat/ is older than 30 days"
