"""Purges sent off the request path: a delete hands over a key and returns at once.

One daemon thread per process takes the keys handed over, waits a moment for more
(a delete hands over ``<hash>`` and ``<hash>/original`` one after the other, and
Cloudflare's free plan allows 5 purge calls a minute), and sends them in batches the
CDN accepts. Each call is bounded by ``EDGE_PURGE_TIMEOUT``; a failed one is tried up
to ``EDGE_PURGE_ATTEMPTS`` times with a growing pause, then logged and counted, and
the object stays at the edge until its ``s-maxage`` (``EDGE_MAX_AGE``) runs out. At
exit a process waits a bounded time for what it still holds (a management command's
purge goes out before it ends).
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections import deque
from typing import Literal

from prometheus_client import Counter

from mediacache.core.counters import STATS
from mediacache.core.links import short_url_for
from mediacache.core.settings import MediaSettings
from mediacache.edge.purgers import EdgePurger, PurgeFailed, purger_for

logger = logging.getLogger("mediacache.edge")

EDGE_PURGES = Counter(
    "mediacache_edge_purges",
    "Objects whose purge from the shared cache in front was confirmed, failed after "
    "every attempt, or dropped (too many waiting).",
    ["result"],
)


def count(result: Literal["purged", "failed", "dropped"], objects: int) -> None:
    EDGE_PURGES.labels(result).inc(objects)
    for _ in range(objects):
        STATS.count_event(f"edge:{result}")


class EdgePurgeHook:
    """Hands keys to a purger in a thread of its own; :meth:`submit` never waits."""

    def __init__(
        self,
        purger: EdgePurger,
        *,
        attempts: int = 3,
        backoff: float = 0.5,
        linger: float = 0.05,
        max_pending: int = 100_000,
        exit_wait: float = 10.0,
    ) -> None:
        self.purger = purger
        self.attempts = max(1, attempts)
        self.backoff = backoff
        self.linger = linger
        self.max_pending = max_pending
        self._pending: deque[str] = deque()
        self._busy = False
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._pid = 0
        atexit.register(self.flush, exit_wait)

    def submit(self, media_key: str) -> None:
        """Queue the purge of one media key (``<hash>`` or ``<hash>/original``)."""
        with self._cond:
            if len(self._pending) >= self.max_pending:
                logger.error(
                    "[MEDIA EDGE] purge of %s dropped: %d purges already waiting",
                    media_key,
                    len(self._pending),
                )
                count("dropped", 1)
                return
            self._pending.append(media_key)
            if self._thread is None or self._pid != os.getpid():  # none yet, or forked
                self._pid = os.getpid()
                self._busy = False
                self._thread = threading.Thread(
                    target=self._run, name="mediacache-edge-purge", daemon=True
                )
                self._thread.start()
            self._cond.notify()

    def flush(self, timeout: float) -> bool:
        """Wait until every key handed over so far was sent (or given up); False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._pending or self._busy:
                if self._thread is None or self._pid != os.getpid():
                    return not self._pending
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending:
                    self._cond.wait()
                self._busy = True
            time.sleep(self.linger)  # let the rest of a delete's keys arrive
            with self._cond:
                batch = [
                    self._pending.popleft()
                    for _ in range(min(self.purger.max_batch, len(self._pending)))
                ]
            try:
                self._send(batch)
            except Exception:  # never let the thread die: later deletes still purge
                logger.exception("[MEDIA EDGE] purge of %d objects failed", len(batch))
                count("failed", len(batch))
            with self._cond:
                self._busy = False
                self._cond.notify_all()

    def _send(self, batch: list[str]) -> None:
        started = time.monotonic()
        for attempt in range(1, self.attempts + 1):
            try:
                summary = self.purger.purge(batch)
            except PurgeFailed as exc:
                if attempt == self.attempts:
                    logger.error(
                        "[MEDIA EDGE] purge failed (%s) for %d objects after %d attempts: %s; "
                        "they stay at the edge until their s-maxage runs out",
                        self.purger.name,
                        len(batch),
                        attempt,
                        exc,
                        extra={"edge": self.purger.name, "objects": len(batch)},
                    )
                    count("failed", len(batch))
                    return
                logger.warning(
                    "[MEDIA EDGE] purge attempt %d (%s) failed: %s", attempt, self.purger.name, exc
                )
                time.sleep(self.backoff * 2 ** (attempt - 1))
                continue
            logger.info(
                "[MEDIA EDGE] purged %d objects (%s, %s) in %.0fms",
                len(batch),
                self.purger.name,
                summary,
                (time.monotonic() - started) * 1000,
                extra={"edge": self.purger.name, "objects": len(batch)},
            )
            count("purged", len(batch))
            return


def edge_hook_for(settings: MediaSettings) -> EdgePurgeHook | None:
    """The hook ``EDGE_PURGE`` asks for, or None. ValueError on bad ``EDGE_*`` settings."""
    purger = purger_for(settings, link_of=short_url_for)
    if purger is None:
        return None
    return EdgePurgeHook(purger, attempts=settings.EDGE_PURGE_ATTEMPTS)
