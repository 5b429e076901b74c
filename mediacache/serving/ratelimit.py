"""Floods of unknown hashes cost the database a bounded rate; a link that exists is
never refused.

Two parts, both in-process and I/O-free:

- :class:`NotFoundLimiter` counts 404s per client (the address
  :mod:`mediacache.serving.clients` derives). Past ``NOT_FOUND_LIMIT`` in
  ``NOT_FOUND_WINDOW`` the client is *limited*: it is answered from the caches, and
  a hash the caches know is gone (the negative cache, in L1 and Redis) gets 429
  without a query.
- :class:`LookupRation` hands out the database lookups of limited clients:
  ``LIMITED_LOOKUPS_PER_SECOND`` per process, whatever the number of limited
  clients, round-robin between client addresses and first-come first-served within
  one. A limited request for a hash the caches do not know *waits its turn* — it is
  never refused — then is looked up like any other: 200 if the link exists (now
  cached for everyone), 429 if not (now in the negative cache).

Why waiting rather than refusing: the only way to know a hash exists is to ask the
database, and a client's address says nothing about the link (the gateway behind a
proxy, or behind the same NAT as a guesser, shares its address). Waiting turns a
flood into back-pressure on the flooder — each of its requests holds its own
connection while it waits — and the database sees at most
``workers * LIMITED_LOOKUPS_PER_SECOND`` lookups a second from all limited clients
together, plus ``NOT_FOUND_LIMIT`` per window from each client before it is
limited. Another client's valid link waits for one turn of the round-robin, not
behind the flood; the same address's valid link waits behind that address's own
earlier requests. Against 2^128 hashes the guessing itself was never a threat.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict, deque

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
        """Seconds until the client is no longer limited, or 0 when it is not."""
        entry = self._clients.get(client)
        if entry is None or entry[1] < self.limit:
            return 0
        remaining = entry[0] + self.window - time.monotonic()
        if remaining <= 0:
            del self._clients[client]
            return 0
        return int(remaining) + 1

    def record_not_found(self, client: str) -> bool:
        """Count a 404; True when this one made the client limited (log it once)."""
        now = time.monotonic()
        start, count = self._clients.pop(client, (now, 0))
        if now - start > self.window:
            start, count = now, 0
        self._clients[client] = (start, count + 1)
        if len(self._clients) > _MAX_CLIENTS:
            self._clients.popitem(last=False)
        return count + 1 == self.limit


class LookupRation:
    """``rate`` turns a second (up to ``burst`` at once after a quiet spell), fairly
    shared between clients: round-robin over addresses, FIFO within one."""

    def __init__(self, rate: float, burst: int = 1) -> None:
        if rate <= 0:
            raise ValueError(f"LIMITED_LOOKUPS_PER_SECOND must be above 0, not {rate!r}")
        self.interval = 1.0 / rate
        self.burst = max(1, burst)
        self._tokens = float(self.burst)
        self._refilled_at = time.monotonic()
        self._waiting: OrderedDict[str, deque[asyncio.Future[None]]] = OrderedDict()
        self._timer: asyncio.TimerHandle | None = None

    @property
    def waiting(self) -> int:
        return sum(len(queue) for queue in self._waiting.values())

    async def turn(self, client: str) -> None:
        """Returns when ``client`` may make one lookup."""
        if not self._waiting and self._take():
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(client, deque()).append(future)
        self._schedule()
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self._tokens = min(self.burst, self._tokens + 1)  # granted, unused: give back
            self._forget(client, future)
            raise

    def _refill(self) -> None:
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._refilled_at) / self.interval)
        self._refilled_at = now

    def _take(self) -> bool:
        self._refill()
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False

    def _schedule(self) -> None:
        if self._timer is None and self._waiting:
            self._refill()
            delay = max(0.0, (1 - self._tokens) * self.interval)
            self._timer = asyncio.get_running_loop().call_later(delay, self._hand_out)

    def _hand_out(self) -> None:
        self._timer = None
        while self._waiting and self._take():
            client, queue = next(iter(self._waiting.items()))
            future = queue.popleft()
            if queue:
                self._waiting.move_to_end(client)  # the next turn is another client's
            else:
                del self._waiting[client]
            if future.done():  # cancelled while waiting: the turn goes to the next one
                self._tokens += 1
                continue
            future.set_result(None)
        self._schedule()

    def _forget(self, client: str, future: asyncio.Future[None]) -> None:
        queue = self._waiting.get(client)
        if queue is None:
            return
        try:
            queue.remove(future)
        except ValueError:
            return
        if not queue:
            del self._waiting[client]
