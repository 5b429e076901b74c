"""When to try a send again: exponential backoff with full jitter, up to a deadline.

Pure logic (no clock, no randomness of its own) so that it is tested without waiting.
Full jitter (a uniform draw in ``[0, min(cap, base * 2**n)]``) spreads the retries of many
messages that failed together (Evolution restarting) instead of sending them back in a wave.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class RetryPolicy:
    base: float  # seconds: the ceiling of the first delay
    cap: float  # seconds: no delay is longer
    floor: float = 0.5  # seconds: a retry is never immediate

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after the ``attempt``-th failed try (1 for the first)."""
        ceiling = min(self.cap, self.base * 2 ** max(attempt - 1, 0))
        draw = (rng or random).uniform(0, ceiling)
        return max(self.floor, draw)

    def next_attempt(
        self,
        attempt: int,
        now: datetime,
        deadline: datetime | None,
        rng: random.Random | None = None,
    ) -> datetime | None:
        """When to try again, or None when that would be past ``deadline``."""
        when = now + timedelta(seconds=self.delay(attempt, rng))
        if deadline is not None and when > deadline:
            return None
        return when
