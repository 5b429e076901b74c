"""The conditional-request parsers and rules of RFC 9110 §13 (serving.conditional)."""

from __future__ import annotations

from email.utils import formatdate

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mediacache.serving.conditional import (
    NOT_MODIFIED,
    PRECONDITION_FAILED,
    if_range_holds,
    parse_http_date,
    precondition,
    strong_etag_matches,
)

ETAG = b'"abc"'
SAMPLE = 784111777  # RFC 9110 §5.6.7: Sun, 06 Nov 1994 08:49:37 GMT
IMF = "Sun, 06 Nov 1994 08:49:37 GMT"
BEFORE = formatdate(SAMPLE - 1, usegmt=True)
AFTER = formatdate(SAMPLE + 1, usegmt=True)
text = st.text(max_size=80)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        (IMF, SAMPLE),
        ("Sunday, 06-Nov-94 08:49:37 GMT", SAMPLE),  # obsolete RFC 850 form
        ("Sun Nov  6 08:49:37 1994", SAMPLE),  # asctime form
        (f"  {IMF} ", SAMPLE),
        ("Sun, 06 Nov 1994 08:49:37 +0000", None),  # not an HTTP-date
        ("1994-11-06T08:49:37Z", None),
        ("Sun, 31 Feb 1994 08:49:37 GMT", None),
        ("yesterday", None),
        ("", None),
        (None, None),
        (IMF + " " * 5000, None),
    ],
)
def test_parse_http_date(header, seconds):
    assert parse_http_date(header) == seconds


@given(text)
def test_parse_http_date_is_total(header):
    assert parse_http_date(header) is None or isinstance(parse_http_date(header), int)


@given(st.integers(0, 2**33))
def test_parse_http_date_reads_what_last_modified_writes(seconds):
    assert parse_http_date(formatdate(seconds, usegmt=True)) == seconds


@pytest.mark.parametrize(
    ("header", "matches"),
    [('"abc"', True), ('"x", "abc"', True), ("*", True), (' "x" ,"abc" ', True),
     ('W/"abc"', False), ('"abcd"', False), ("abc", False), ("", False), (None, False)],
)  # fmt: skip
def test_if_match_compares_strongly(header, matches):
    assert strong_etag_matches(header, ETAG) is matches


@pytest.mark.parametrize(
    ("conditions", "verdict"),
    [
        ({}, None),
        # If-Match: a tag that does not match fails, whatever else is asked.
        ({"if_match": '"abc"'}, None),
        ({"if_match": "*"}, None),
        ({"if_match": '"other"'}, PRECONDITION_FAILED),
        ({"if_match": 'W/"abc"'}, PRECONDITION_FAILED),
        ({"if_match": '"other"', "if_none_match": '"abc"'}, PRECONDITION_FAILED),
        # If-Unmodified-Since: only without If-Match.
        ({"if_unmodified_since": IMF}, None),
        ({"if_unmodified_since": AFTER}, None),
        ({"if_unmodified_since": BEFORE}, PRECONDITION_FAILED),
        ({"if_unmodified_since": BEFORE, "if_match": '"abc"'}, None),
        ({"if_unmodified_since": "garbage"}, None),
        # If-None-Match: a match is 304 (weak comparison).
        ({"if_none_match": 'W/"abc"'}, NOT_MODIFIED),
        ({"if_none_match": '"other"'}, None),
        # If-Modified-Since: only without If-None-Match.
        ({"if_modified_since": IMF}, NOT_MODIFIED),
        ({"if_modified_since": AFTER}, NOT_MODIFIED),
        ({"if_modified_since": BEFORE}, None),
        ({"if_modified_since": IMF, "if_none_match": '"other"'}, None),
        ({"if_modified_since": BEFORE, "if_none_match": '"abc"'}, NOT_MODIFIED),
        ({"if_modified_since": "Sun, 06 Nov 1994"}, None),
        # Both groups: the 412 checks come first.
        ({"if_unmodified_since": BEFORE, "if_modified_since": IMF}, PRECONDITION_FAILED),
        ({"if_unmodified_since": AFTER, "if_modified_since": IMF}, NOT_MODIFIED),
    ],
)
def test_precondition_follows_rfc_9110_precedence(conditions, verdict):
    assert precondition(ETAG, SAMPLE, **conditions) == verdict


def test_date_conditions_are_ignored_when_the_upload_time_is_unknown():
    assert precondition(ETAG, None, if_unmodified_since=BEFORE) is None
    assert precondition(ETAG, None, if_modified_since=AFTER) is None
    assert precondition(ETAG, None, if_match='"other"') == PRECONDITION_FAILED
    assert precondition(ETAG, None, if_none_match='"abc"') == NOT_MODIFIED


@given(
    last_modified=st.one_of(st.none(), st.integers(0, 2**33)),
    if_match=st.one_of(st.none(), text),
    if_unmodified_since=st.one_of(st.none(), text),
    if_none_match=st.one_of(st.none(), text),
    if_modified_since=st.one_of(st.none(), text),
)
def test_precondition_is_total(
    last_modified, if_match, if_unmodified_since, if_none_match, if_modified_since
):
    verdict = precondition(
        ETAG,
        last_modified,
        if_match=if_match,
        if_unmodified_since=if_unmodified_since,
        if_none_match=if_none_match,
        if_modified_since=if_modified_since,
    )
    assert verdict in (None, NOT_MODIFIED, PRECONDITION_FAILED)
    if if_match is not None and not strong_etag_matches(if_match, ETAG):
        assert verdict == PRECONDITION_FAILED


@pytest.mark.parametrize(
    ("header", "last_modified", "holds"),
    [
        (None, SAMPLE, True),
        ('"abc"', SAMPLE, True),
        (' "abc" ', None, True),
        ('W/"abc"', SAMPLE, False),  # a weak tag never validates a range
        ('"other"', SAMPLE, False),
        ('"abc", "x"', SAMPLE, False),
        (IMF, SAMPLE, True),  # the exact Last-Modified date
        ("Sunday, 06-Nov-94 08:49:37 GMT", SAMPLE, True),
        (AFTER, SAMPLE, False),  # a later date is not "not modified since" here
        (BEFORE, SAMPLE, False),
        (IMF, None, False),  # no Last-Modified: a date cannot validate
        ("garbage", SAMPLE, False),
        ("", SAMPLE, False),
    ],
)
def test_if_range_needs_the_strong_etag_or_the_exact_date(header, last_modified, holds):
    assert if_range_holds(header, ETAG, last_modified) is holds


@given(text, st.one_of(st.none(), st.integers(0, 2**33)))
def test_if_range_is_total(header, last_modified):
    assert if_range_holds(header, ETAG, last_modified) in (True, False)
