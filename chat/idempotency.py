"""One message per ``Idempotency-Key``: a repeated ``POST /api/messages/`` (a client retry
after a timeout, while the first is still sending, or a day later) returns the message
the first request created, and never sends a second time.

Keys are scoped to the API key that used them and kept with the message (so for at
least as long as the message exists: always more than the 24 hours clients rely on). The
request's *fingerprint* (a SHA-256 of what the message is made of) is kept beside the
key: the same key with a different body is a client bug, answered 422, never a send.
The database's unique constraint decides races between concurrent first requests.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from .models import Message

HEADER = "Idempotency-Key"
MAX_LENGTH = 255


class IdempotencyConflict(Exception):
    """The key was used before for a different request."""


def clean_key(raw: str | None) -> str | None:
    """The key as stored, or None when none was given; ValueError for a bad one."""
    if raw is None or raw == "":
        return None
    key = raw.strip()
    if not key or len(key) > MAX_LENGTH or not key.isprintable():
        raise ValueError(
            f"{HEADER} must be 1-{MAX_LENGTH} printable characters (a UUID is a good choice)"
        )
    return key


def fingerprint(fields: dict[str, Any]) -> str:
    """A stable digest of the request's meaning (key order and JSON spacing aside)."""
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def find(scope: str, key: str | None, request_fingerprint: str) -> Message | None:
    """The message an earlier request with this key created; IdempotencyConflict when
    that request was a different one."""
    if key is None:
        return None
    message = Message.objects.filter(idempotency_scope=scope, idempotency_key=key).first()
    if message is not None and message.request_fingerprint != request_fingerprint:
        raise IdempotencyConflict(
            f"{HEADER} {key[:40]!r} was already used for a different request "
            f"(message {message.pk}); use a new key for a new message"
        )
    return message
