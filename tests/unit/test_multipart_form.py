"""chat.multipart: the upload's bytes and the form fields, however the body is cut."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chat.multipart import (
    MalformedMultipart,
    MultipartForm,
    boundary_of,
    sanitize_file_name,
)

BOUNDARY = b"xYzZy"


def body(file_bytes: bytes, *, filename: str = "a.bin", before: str = "", after: str = "") -> bytes:
    def field(name: str, value: str) -> bytes:
        return (
            f'--xYzZy\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        ).encode()

    out = field("voice_note", before) if before else b""
    out += (
        (
            f'--xYzZy\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
            "Content-Type: audio/ogg\r\n\r\n"
        ).encode()
        + file_bytes
        + b"\r\n"
    )
    out += field("caption", after) if after else b""
    return out + b"--xYzZy--\r\n"


def parse(data: bytes, cuts: list[int]) -> tuple[MultipartForm, bytes, list]:
    form = MultipartForm(BOUNDARY)
    received = b""
    events = []
    start = 0
    for end in [*sorted(cuts), len(data)]:
        fed = form.feed(data[start:end])
        if fed.started is not None:
            events.append(("started", fed.started.filename, fed.started.content_type))
        received += b"".join(fed.chunks)
        if fed.file_ended:
            events.append(("ended",))
        start = end
    form.finish()
    return form, received, events


@settings(max_examples=60, deadline=None)
@given(
    payload=st.binary(min_size=1, max_size=3000),
    cut_points=st.lists(st.floats(min_value=0, max_value=1), max_size=8),
)
def test_the_file_and_the_fields_whatever_the_chunks(payload, cut_points):
    data = body(payload, before="true", after="hello")
    form, received, events = parse(data, [int(p * len(data)) for p in cut_points])
    assert received == payload
    assert events == [("started", "a.bin", "audio/ogg"), ("ended",)]
    assert form.fields == {"voice_note": "true", "caption": "hello"}


def test_the_file_name_is_kept_as_django_keeps_it():
    _form, _, events = parse(body(b"x", filename="../../etc/passwd voice.ogg"), [])
    assert events[0][1] == "passwd voice.ogg"
    assert sanitize_file_name("..") is None
    assert sanitize_file_name("c:\\dir\\a&amp;b.png") == "a&b.png"


def test_a_part_without_a_file_name_is_a_field():
    data = (
        b'--xYzZy\r\nContent-Disposition: form-data; name="file"\r\n\r\nnot a file\r\n--xYzZy--\r\n'
    )
    form, _received, events = parse(data, [])
    assert events == []
    assert form.fields == {"file": "not a file"}


def test_a_truncated_body_is_malformed():
    data = body(os.urandom(100))[:-20]
    form = MultipartForm(BOUNDARY)
    form.feed(data)
    with pytest.raises(MalformedMultipart, match="closing boundary"):
        form.finish()


def test_large_form_fields_are_refused():
    form = MultipartForm(BOUNDARY)
    big = b'--xYzZy\r\nContent-Disposition: form-data; name="caption"\r\n\r\n' + b"x" * 70_000
    with pytest.raises(MalformedMultipart, match="form fields"):
        form.feed(big)


@pytest.mark.parametrize(
    ("header", "boundary"),
    [
        ("multipart/form-data; boundary=abc", b"abc"),
        ('multipart/form-data; boundary="a b"', b"a b"),
        ("multipart/form-data", None),
        ("application/json", None),
        ("", None),
    ],
)
def test_the_boundary_of_a_content_type(header, boundary):
    assert boundary_of(header) == boundary
