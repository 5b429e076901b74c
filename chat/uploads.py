"""Taking an upload in: size limit while streaming, SHA-256 on the way, type from the bytes."""

from __future__ import annotations

import hashlib
import uuid

import magic
from django.core.exceptions import RequestDataTooBig
from django.core.files.uploadhandler import FileUploadHandler
from django.utils import timezone

from mediacache.core.filetypes import extension_for
from mediacache.core.settings import media_settings
from mediacache.media.types import SniffedType

SNIFF_BYTES = 4096


class UploadTooLarge(RequestDataTooBig):
    """The upload passed ``MEDIA_MAX_UPLOAD_BYTES``; raised mid-stream, before it is all read.

    The API answers it with 413 and /ops/ with its page; anywhere else (the admin, where
    the CSRF check reads the body first) Django answers 400 as for its own
    ``RequestDataTooBig``, never 500.
    """

    def __init__(self, limit: int) -> None:
        super().__init__(f"upload exceeds the limit of {limit} bytes")
        self.limit = limit


class HashingLimitedUploadHandler(FileUploadHandler):
    """First in the handler chain: counts and hashes each file's chunks as they arrive.

    The digests end up in ``request.upload_sha256[field_name]``; the chunks go on
    to Django's usual handlers (memory for small files, a temporary file otherwise).
    """

    def new_file(self, *args, **kwargs) -> None:
        super().new_file(*args, **kwargs)
        self._limit = media_settings().MAX_UPLOAD_BYTES
        self._received = 0
        self._sha256 = hashlib.sha256()

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes:
        self._received += len(raw_data)
        if self._received > self._limit:
            raise UploadTooLarge(self._limit)
        self._sha256.update(raw_data)
        return raw_data

    def file_complete(self, file_size: int):
        digests = getattr(self.request, "upload_sha256", None)
        if digests is None:
            digests = self.request.upload_sha256 = {}
        digests[self.field_name] = self._sha256.hexdigest()
        return None  # let the next handler build the file


def sniff(head: bytes) -> SniffedType:
    """The real type of a file from its first bytes; the client's claim is ignored."""
    mime_type = magic.from_buffer(head, mime=True) or "application/octet-stream"
    if mime_type == "application/ogg" and b"OpusHead" in head:
        mime_type = "audio/ogg"
    return SniffedType(mime_type, extension_for(mime_type))


def new_object_key(extension: str) -> str:
    """``chat/YYYY/MM/DD/<uuid>.<ext>``: the lifecycle prefix, never the client's name."""
    now = timezone.now()
    prefix = media_settings().KEY_PREFIX
    return f"{prefix}{now:%Y/%m/%d}/{uuid.uuid4().hex}{extension}"
