"""Range and conditional requests (RFC 9110 §13, §14): total functions that never raise."""

from __future__ import annotations

from typing import Final, Literal, TypeAlias

from django.utils.http import parse_http_date_safe

# Request headers that make a GET/HEAD more than a plain one: the app reads only these,
# and the server's L1 shortcut (serving.fastpath) leaves any request carrying one to it.
CONDITION_HEADERS: Final = frozenset(
    {
        b"range",
        b"if-range",
        b"if-match",
        b"if-none-match",
        b"if-modified-since",
        b"if-unmodified-since",
    }
)
NOT_MODIFIED: Final = 304
PRECONDITION_FAILED: Final = 412

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


def parse_http_date(header: str | None) -> int | None:
    """Seconds since the epoch of an HTTP-date in any of RFC 9110's three forms
    (§5.6.7); None for anything else, as a date condition that cannot be read is ignored."""
    if not header or len(header) > _MAX_HEADER:
        return None
    return parse_http_date_safe(header.strip())


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


def strong_etag_matches(header: str | None, etag: bytes) -> bool:
    """If-Match semantics: strong comparison over a list (a weak tag never matches), or ``*``
    (the object exists: it is being served)."""
    if not header or len(header) > _MAX_HEADER:
        return False
    target = etag.decode("ascii")
    return any(c.strip() in ("*", target) for c in header.split(","))


def precondition(
    etag: bytes,
    last_modified: int | None,
    *,
    if_match: str | None = None,
    if_unmodified_since: str | None = None,
    if_none_match: str | None = None,
    if_modified_since: str | None = None,
) -> Literal[304, 412] | None:
    """RFC 9110 §13.2.2, steps 1-4, for a GET/HEAD of an object that exists.

    412 when If-Match fails or, without If-Match, the object changed after
    If-Unmodified-Since; then 304 when If-None-Match matches or, without
    If-None-Match, the object did not change after If-Modified-Since; None: answer
    as usual. Dates are read only when their header counts, and ignored when
    unreadable or when the upload time (``last_modified``) is unknown.
    """
    if if_match is not None:
        if not strong_etag_matches(if_match, etag):
            return PRECONDITION_FAILED
    elif if_unmodified_since is not None and last_modified is not None:
        date = parse_http_date(if_unmodified_since)
        if date is not None and last_modified > date:
            return PRECONDITION_FAILED
    if if_none_match is not None:
        if etag_matches(if_none_match, etag):
            return NOT_MODIFIED
    elif if_modified_since is not None and last_modified is not None:
        date = parse_http_date(if_modified_since)
        if date is not None and last_modified <= date:
            return NOT_MODIFIED
    return None


def if_range_holds(header: str | None, etag: bytes, last_modified: int | None) -> bool:
    """Whether a Range may be honoured (RFC 9110 §13.1.5): no If-Range, or one naming
    this strong ETag exactly, or exactly the Last-Modified date; else the whole body.

    The date counts as strong: an upload's bytes are written once. (Every answer also
    carries the ETag, and a client that has one sends it here rather than a date.)
    """
    if header is None:
        return True
    value = header.strip()
    if value.startswith(('"', "W/")):
        return value == etag.decode("ascii")  # a weak tag never matches
    return last_modified is not None and parse_http_date(value) == last_modified
