"""A ``multipart/form-data`` body read as it arrives: python-multipart's parser (the one
Starlette uses), turned into what an upload needs: the file part's bytes as they come,
the small form fields in full.

Only the first part named ``file`` that carries a file name is the upload, as in
Django's parser a part without one is a form field; other file parts are skipped.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field

from python_multipart.multipart import MultipartParser, parse_options_header

FILE_FIELD = "file"
# Form fields beside the file (voice_note, ...) are a few bytes; more is not an upload.
FIELDS_MAX_BYTES = 64 * 1024


class MalformedMultipart(Exception):
    """The body is not the multipart/form-data its header announced."""


@dataclass
class FilePart:
    """The upload's part as its headers name it."""

    filename: str
    content_type: str


@dataclass
class Fed:
    """What one :meth:`MultipartForm.feed` brought: the file part's start, its bytes, its end."""

    started: FilePart | None = None
    chunks: list[bytes] = field(default_factory=list)
    file_ended: bool = False


def boundary_of(content_type: str) -> bytes | None:
    """The boundary of a ``multipart/form-data`` Content-Type; None for any other body."""
    kind, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary:
        return None
    return boundary


def sanitize_file_name(name: str) -> str | None:
    """The client's file name as Django's MultiPartParser.sanitize_file_name keeps it (an
    instance method there), so both entries record the same ``original_filename``."""
    name = html.unescape(name).rsplit("/")[-1].rsplit("\\")[-1]
    name = "".join(char for char in name if char.isprintable())
    return None if name in {"", ".", ".."} else name


class MultipartForm:
    """Feed it the body's chunks; it hands back the upload's bytes and keeps the fields."""

    def __init__(self, boundary: bytes) -> None:
        self.fields: dict[str, str] = {}
        self.complete = False
        self._fields_bytes = 0
        self._header_name = b""
        self._header_value = b""
        self._headers: dict[bytes, bytes] = {}
        self._part: str = "skip"  # "file", "field:<name>" or "skip"
        self._field_value = bytearray()
        self._file_seen = False
        self._fed = Fed()
        self._parser = MultipartParser(
            boundary,
            {
                "on_part_begin": self._part_begin,
                "on_header_field": self._header_field,
                "on_header_value": self._header_value_part,
                "on_header_end": self._header_end,
                "on_headers_finished": self._headers_finished,
                "on_part_data": self._part_data,
                "on_part_end": self._part_end,
                "on_end": self._end,
            },
        )

    def feed(self, data: bytes) -> Fed:
        self._fed = Fed()
        try:
            self._parser.write(data)
        except MalformedMultipart:
            raise
        except Exception as exc:  # python-multipart's MultipartParseError and its kin
            raise MalformedMultipart(str(exc)) from exc
        return self._fed

    def finish(self) -> None:
        """The body has ended: it must have ended with the closing boundary."""
        if not self.complete:
            raise MalformedMultipart("the body ended before its closing boundary")

    def _part_begin(self) -> None:
        self._headers = {}
        self._part = "skip"

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def _header_value_part(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _header_end(self) -> None:
        self._headers[self._header_name.lower()] = self._header_value
        self._header_name = self._header_value = b""

    def _headers_finished(self) -> None:
        disposition, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        if disposition != b"form-data" or b"name" not in options:
            raise MalformedMultipart("a part without Content-Disposition: form-data; name=")
        name = options[b"name"].decode("utf-8", "replace")
        raw_filename = options.get(b"filename")
        filename = (
            sanitize_file_name(raw_filename.decode("utf-8", "replace"))
            if raw_filename is not None
            else None
        )
        if filename is None:
            self._part = f"field:{name}"
            self._field_value = bytearray()
        elif name == FILE_FIELD and not self._file_seen:
            self._file_seen = True
            self._part = "file"
            content_type = self._headers.get(b"content-type", b"").decode("latin-1")
            self._fed.started = FilePart(filename, content_type)

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._part == "file":
            self._fed.chunks.append(data[start:end])
        elif self._part.startswith("field:"):
            self._fields_bytes += end - start
            if self._fields_bytes > FIELDS_MAX_BYTES:
                raise MalformedMultipart(f"form fields over {FIELDS_MAX_BYTES} bytes")
            self._field_value += data[start:end]

    def _part_end(self) -> None:
        if self._part == "file":
            self._fed.file_ended = True
        elif self._part.startswith("field:"):
            self.fields[self._part[len("field:") :]] = self._field_value.decode("utf-8", "replace")
        self._part = "skip"

    def _end(self) -> None:
        self.complete = True
