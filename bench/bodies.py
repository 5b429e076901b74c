"""Deterministic voice-note-like bodies: a real Ogg Opus head, then pseudo-random bytes.

libmagic (the upload path's type sniffing) calls them ``audio/ogg``, and the same
``(seed, index, size)`` always gives the same bytes, so a checker can recompute
a body instead of keeping 350 MB of them in memory.
"""

from __future__ import annotations

import random
from functools import cache
from pathlib import Path

VOICE_FIXTURE = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "voice.ogg"
HEAD_BYTES = 1024


@cache
def voice_head() -> bytes:
    """The first KB of a real voice note: Ogg pages with OpusHead and OpusTags."""
    return VOICE_FIXTURE.read_bytes()[:HEAD_BYTES]


def body_for(seed: int, index: int, size: int) -> bytes:
    """``size`` bytes for object ``index`` of a seeded set."""
    head = voice_head()
    noise = random.Random(seed * 1_000_003 + index).randbytes(max(0, size - len(head)))
    return (head + noise)[:size]
