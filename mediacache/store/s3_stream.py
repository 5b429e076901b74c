"""Writing one S3 object from chunks as they arrive: the streaming upload's store writer.

Hand-written on boto3's client calls rather than ``upload_fileobj``: s3transfer wants a
file it can read at its own pace, while an upload arrives at the client's pace, and the
object's parts should leave while later bytes are still coming in. An object that ends
within its first part (``part_bytes``, S3's 5 MiB minimum) goes in one ``PutObject``;
a larger one becomes a multipart upload whose parts are sent by a thread pool, one part
in flight per upload: a second full part waits for the first (so at most two parts are
held, ~10 MiB), and the wait slows the reading of the request, which slows the client.
"""

from __future__ import annotations

import contextlib
import logging
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from mediacache.store.base import StoreUnavailable

logger = logging.getLogger("mediacache.store")

PART_BYTES = 5 * 1024 * 1024
# Parts of every upload in this process go through here; each upload has at most one
# in flight, so this bounds the S3 connections uploads use at once.
_PARTS = ThreadPoolExecutor(max_workers=8, thread_name_prefix="s3-part")
_FAILURES = (ClientError, BotoCoreError, OSError)
_PART_CHECKSUMS = (
    "ChecksumCRC32", "ChecksumCRC32C", "ChecksumCRC64NVME", "ChecksumSHA1", "ChecksumSHA256",
)  # fmt: skip


class S3StreamWriter:
    """One object under ``key``; see :class:`mediacache.store.base.ObjectWriter`.

    Two buffers of ``part_bytes``, one filling while the other is being sent, and no
    other copy of the bytes: chunks are copied into the filling buffer, which boto3
    sends as it is (a ``bytearray`` body), so an upload holds at most two parts."""

    def __init__(
        self, client: Any, bucket: str, key: str, params: dict[str, Any], *, part_bytes: int
    ) -> None:
        self._client = client
        self._bucket = bucket
        self._key = key
        self._params = params
        self._part_bytes = part_bytes
        # Grown as bytes come, not allocated at part size: glibc serves a 5 MiB buffer
        # from its heap once one was freed, and zeroes (touches) all of it.
        self._filling = bytearray()
        self._filled = 0
        self._spare: bytearray | None = None  # the buffer of the last part sent
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []
        self._in_flight: Future[dict[str, Any]] | None = None
        self._committed = False
        self.parts_sent = 0

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            if self._filled == self._part_bytes:
                # Full, and more is coming: the part that ends the object is sent by
                # commit() instead, so it is never empty.
                self._send_filling()
            room = min(self._part_bytes - self._filled, len(view))
            end = self._filled + room
            if end <= len(self._filling):  # a reused buffer
                self._filling[self._filled : end] = view[:room]
            else:  # a new one grows with the object (a small upload stays small)
                self._filling += view[:room]
            self._filled = end
            view = view[room:]

    def commit(self) -> None:
        try:
            if self._upload_id is None:
                body = self._filling
                del body[self._filled :]
                self._client.put_object(
                    Bucket=self._bucket, Key=self._key, Body=body, **self._params
                )
            else:
                self._send_filling()
                self._wait_in_flight()
                self._client.complete_multipart_upload(
                    Bucket=self._bucket,
                    Key=self._key,
                    UploadId=self._upload_id,
                    MultipartUpload={"Parts": self._parts},
                )
        except _FAILURES as exc:
            raise StoreUnavailable(type(exc).__name__) from exc
        self._committed = True
        self._filling = bytearray()
        self._spare = None

    def abort(self) -> None:
        in_flight, self._in_flight = self._in_flight, None
        if in_flight is not None:
            in_flight.cancel()
            # Its failure is why we abort, or moot now.
            with contextlib.suppress(Exception):
                in_flight.result()
        self._filling = bytearray()
        self._spare = None
        try:
            if self._committed:
                self._client.delete_object(Bucket=self._bucket, Key=self._key)
            elif self._upload_id is not None:
                self._client.abort_multipart_upload(
                    Bucket=self._bucket, Key=self._key, UploadId=self._upload_id
                )
        except _FAILURES as exc:
            # The bucket's lifecycle rule should also abort incomplete multipart uploads.
            logger.error("[MEDIA] could not abort the upload of %s: %r", self._key, exc)

    def _send_filling(self) -> None:
        """Hand the filling buffer to the part pool once the part before it is through;
        that part's buffer fills next."""
        try:
            self._wait_in_flight()
            if self._upload_id is None:
                created = self._client.create_multipart_upload(
                    Bucket=self._bucket, Key=self._key, **self._params
                )
                self._upload_id = created["UploadId"]
        except _FAILURES as exc:
            raise StoreUnavailable(type(exc).__name__) from exc
        body = self._filling
        if self._filled < len(body):
            del body[self._filled :]  # the last part
        number = len(self._parts) + 1
        self._in_flight = _PARTS.submit(self._upload_part, number, body)
        self._filling = self._spare if self._spare is not None else bytearray()
        self._spare = body
        self._filled = 0

    def _upload_part(self, number: int, body: bytearray) -> dict[str, Any]:
        response = self._client.upload_part(
            Bucket=self._bucket, Key=self._key, UploadId=self._upload_id,
            PartNumber=number, Body=body,
        )  # fmt: skip
        # The ETag, and the checksum botocore added (S3 wants it back when completing).
        part = {"PartNumber": number, "ETag": response["ETag"]}
        part.update({k: response[k] for k in _PART_CHECKSUMS if k in response})
        self.parts_sent += 1
        return part

    def _wait_in_flight(self) -> None:
        in_flight = self._in_flight
        if in_flight is None:
            return
        try:
            self._parts.append(in_flight.result())
        except _FAILURES as exc:
            raise StoreUnavailable(type(exc).__name__) from exc
        finally:
            self._in_flight = None
