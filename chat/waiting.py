"""``Prefer: wait=N`` (RFC 7240): a caller that wants the send's outcome in the answer
waits up to N seconds (at most MAX_WAIT) for a worker to finish it.

The wait polls the message's row, with growing pauses, and gives its database connection
back between polls, so a waiting request holds a thread, not a connection.
"""

from __future__ import annotations

import re
import time

from django.db import close_old_connections, connection

from .models import Message

MAX_WAIT = 25.0  # under the 30 s a PaaS router allows a request
_WAIT = re.compile(r"(?:^|[,;\s])wait\s*=\s*\"?(\d+(?:\.\d+)?)\"?", re.IGNORECASE)


def requested_wait(prefer: str | None) -> float | None:
    """Seconds from a ``Prefer`` header (``respond-async, wait=10``), capped; None if absent."""
    if not prefer:
        return None
    match = _WAIT.search(prefer)
    if match is None:
        return None
    return min(float(match.group(1)), MAX_WAIT)


def wait_until_final(message: Message, seconds: float) -> Message:
    """The message once it is final (sent, failed, unknown), or as it is after ``seconds``."""
    deadline = time.monotonic() + seconds
    pause = 0.02
    while not message.is_final:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        if not connection.in_atomic_block:
            connection.close()  # back to the pool while we sleep
        time.sleep(min(pause, left))
        pause = min(pause * 1.5, 0.5)
        close_old_connections()
        message.refresh_from_db()
    return message
