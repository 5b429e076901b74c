"""Slowing down hash guessing: too many 404s from one client earn 429s.

In-process and I/O-free, so the 404 path stays cheap; each worker counts on its
own, which bounds a guesser to ``limit * workers`` misses per window — against
2^128 hashes that is no help to them. Legitimate clients (Evolution fetching
links it was given) almost never see a 404.
"""

from __future__ import annotations

import time
from collections import OrderedDict

_MAX_CLIENTS = 50_000


class NotFoundLimiter:
    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        # client -> (start of its window, 404s in it)
        self._clients: OrderedDict[str, tuple[float, int]] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return self.limit > 0

    def retry_after(self, client: str) -> int:
        """Seconds the client must wait, or 0 when it may ask."""
        entry = self._clients.get(client)
        if entry is None or entry[1] < self.limit:
            return 0
        remaining = entry[0] + self.window - time.monotonic()
        if remaining <= 0:
            del self._clients[client]
            return 0
        return int(remaining) + 1

    def record_not_found(self, client: str) -> None:
        now = time.monotonic()
        start, count = self._clients.pop(client, (now, 0))
        if now - start > self.window:
            start, count = now, 0
        self._clients[client] = (start, count + 1)
        if len(self._clients) > _MAX_CLIENTS:
            self._clients.popitem(last=False)
