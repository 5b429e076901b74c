"""A bounded in-process LRU of ready-to-serve objects: the L1 tier.

Bounded in bytes, not entries, because objects range from 2 KB stickers to 8 MB
videos. Entries also age out, so a deletion seen by another process is
forgotten here within ``ttl`` at worst. A lock makes it safe to warm or purge
from Django's worker threads while the event loop reads.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict

from mediacache.core.objects import CachedMedia

# A remembered 404: cheaper to store than to ask the resolver or store again.
GONE = object()
_GONE_COST = 128
_ENTRY_OVERHEAD = 512  # dict slot, tuple, header list: a rough, conservative figure


class BytesLRU:
    def __init__(self, max_bytes: int, ttl: float, max_item_bytes: int | None = None) -> None:
        self.max_bytes = max_bytes
        self.ttl = ttl
        self.max_item_bytes = max_bytes // 4 if max_item_bytes is None else max_item_bytes
        self._items: OrderedDict[str, tuple[object, float, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        # When each key was last invalidated: a fill that started earlier must not
        # put back what a deletion just removed.
        self._invalidated: dict[str, float] = {}

    def __len__(self) -> int:
        return len(self._items)

    @property
    def used_bytes(self) -> int:
        return self._bytes

    def get(self, key: str) -> CachedMedia | object | None:
        """The entry, ``GONE`` for a remembered 404, or None."""
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            value, deadline, cost = item
            if deadline <= time.monotonic():
                del self._items[key]
                self._bytes -= cost
                return None
            self._items.move_to_end(key)
            return value

    def put(
        self, key: str, value: CachedMedia, ttl: float | None = None, since: float | None = None
    ) -> None:
        """Keep ``value``, unless ``key`` was invalidated after ``since`` (a monotonic time)."""
        cost = len(value.body) + _ENTRY_OVERHEAD
        if cost > self.max_item_bytes or self.max_bytes <= 0:
            return
        self._store(key, value, cost, self.ttl if ttl is None else min(ttl, self.ttl), since)

    def put_gone(self, key: str, ttl: float) -> None:
        if self.max_bytes > 0:
            self._store(key, GONE, _GONE_COST, min(ttl, self.ttl), None)

    def invalidate(self, key: str) -> None:
        """Forget ``key`` and refuse fills of it that started before now."""
        now = time.monotonic()
        with self._lock:
            self._pop(key)
            self._invalidated[key] = now
            if len(self._invalidated) > 10_000:
                horizon = now - 600
                self._invalidated = {k: t for k, t in self._invalidated.items() if t > horizon}

    def invalidated_since(self, key: str, since: float) -> bool:
        return self._invalidated.get(key, -1.0) >= since

    def _pop(self, key: str) -> None:
        old = self._items.pop(key, None)
        if old is not None:
            self._bytes -= old[2]

    def _store(self, key: str, value: object, cost: int, ttl: float, since: float | None) -> None:
        if ttl <= 0:
            return
        deadline = time.monotonic() + ttl
        with self._lock:
            if since is not None and self._invalidated.get(key, -1.0) >= since:
                return
            self._pop(key)
            self._items[key] = (value, deadline, cost)
            self._bytes += cost
            while self._bytes > self.max_bytes and self._items:
                _, (_, _, evicted) = self._items.popitem(last=False)
                self._bytes -= evicted

    def discard(self, key: str) -> None:
        with self._lock:
            self._pop(key)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0
