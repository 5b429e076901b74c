"""Parsing of Range and If-None-Match: total functions that never raise."""

from __future__ import annotations

from typing import Final, Literal, TypeAlias

# parse_range() outcomes besides a (start, end) pair.
IGNORE: Final = None  # no usable Range: answer 200 with the whole body
UNSATISFIABLE: Final = "unsatisfiable"  # a valid range outside the body: 416
# What parse_range() answers; ``== UNSATISFIABLE`` and ``is None`` leave the pair.
ParsedRange: TypeAlias = tuple[int, int] | Literal["unsatisfiable"] | None

_MAX_HEADER = 4096


def _digits_or_empty(value: str) -> bool:
    return not value or (value.isascii() and value.isdigit())


def parse_range(header: str | None, size: int) -> ParsedRange:
    """One byte range from a ``Range`` header as inclusive (start, end).

    Multiple ranges and malformed headers are ignored (RFC 9110 lets a server
    answer 200 with the whole body); a well-formed range past the end is 416.
    """
    if not header or len(header) > _MAX_HEADER:
        return IGNORE
    unit, sep, spec = header.partition("=")
    if not sep or unit.strip().lower() != "bytes" or "," in spec:
        return IGNORE
    first, dash, last = spec.strip().partition("-")
    if not dash:
        return IGNORE
    first, last = first.strip(), last.strip()
    if not (_digits_or_empty(first) and _digits_or_empty(last)):
        return IGNORE
    if not first:
        if not last:
            return IGNORE
        suffix = int(last)
        if suffix == 0 or size == 0:
            return UNSATISFIABLE
        return (max(0, size - suffix), size - 1)
    start = int(first)
    end = int(last) if last else size - 1
    if last and end < start:
        return IGNORE
    if start >= size:
        return UNSATISFIABLE
    return (start, min(end, size - 1))


def etag_matches(header: str | None, etag: bytes) -> bool:
    """If-None-Match semantics: weak comparison over a list, or ``*``."""
    if not header or len(header) > _MAX_HEADER:
        return False
    target = etag.decode("ascii")
    for candidate in header.split(","):
        candidate = candidate.strip()
        if candidate == "*":
            return True
        if candidate.startswith("W/"):
            candidate = candidate[2:]
        if candidate == target:
            return True
    return False
