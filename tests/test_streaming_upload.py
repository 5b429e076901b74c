"""POST /api/attachments/ taken in while it arrives (chat.streaming), against the live
service and moto's S3 endpoint over HTTP.

The client here is a raw socket, so a test decides exactly how much of the body has
been sent when it looks at the store: parts in S3 before the body's end, nothing left
after a disconnect or a 413, a 401 before any of the body was sent.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import socket
import time
from collections.abc import Callable
from typing import TypeVar
from urllib.parse import urlsplit

import pytest

from chat.models import MessageAttachment
from tests.conftest import BUCKET, upload

T = TypeVar("T")
MiB = 2**20
BOUNDARY = "streamup-boundary"


def head(filename: str = "big.bin") -> bytes:
    return (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"'
        "\r\nContent-Type: application/octet-stream\r\n\r\n"
    ).encode()


TAIL = f"\r\n--{BOUNDARY}--\r\n".encode()


class RawUpload:
    """One POST /api/attachments/ over a socket, its body sent piece by piece."""

    def __init__(self, url: str, api_key: str | None, length: int | None) -> None:
        parts = urlsplit(url)
        self.sock = socket.create_connection((parts.hostname, parts.port), timeout=30)
        headers = [
            "POST /api/attachments/ HTTP/1.1",
            f"Host: {parts.hostname}",
            f"Content-Type: multipart/form-data; boundary={BOUNDARY}",
        ]
        if api_key is not None:
            headers.append(f"Authorization: Bearer {api_key}")
        self.chunked = length is None
        headers.append(
            "Transfer-Encoding: chunked" if self.chunked else f"Content-Length: {length}"
        )
        self.sock.sendall(("\r\n".join(headers) + "\r\n\r\n").encode())

    def send(self, data: bytes) -> None:
        if self.chunked:
            data = f"{len(data):x}\r\n".encode() + data + b"\r\n"
        self.sock.sendall(data)

    def response(self) -> tuple[int, dict]:
        answer = http.client.HTTPResponse(self.sock)
        answer.begin()
        import json

        return answer.status, json.loads(answer.read())

    def close(self) -> None:
        self.sock.close()


def wait_for(what: Callable[[], T], timeout: float = 30) -> T:
    """``what()`` once it is truthy; fails after ``timeout`` seconds (a bound, not a
    measurement: the machine may be slow)."""
    deadline = time.monotonic() + timeout
    while not (value := what()):
        assert time.monotonic() < deadline, f"still {value!r} after {timeout} s"
        time.sleep(0.05)
    return value


def open_uploads(s3) -> list[dict]:
    return s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", [])


def parts_received(s3) -> int:
    """Parts moto holds for the open multipart uploads of the bucket."""
    return sum(
        len(s3.list_parts(Bucket=BUCKET, Key=u["Key"], UploadId=u["UploadId"]).get("Parts", []))
        for u in open_uploads(s3)
    )


def stored_keys(s3) -> list[str]:
    return [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])]


def test_parts_reach_s3_while_the_client_is_still_sending(live, api_key, s3):
    body = os.urandom(13 * MiB)
    sent_first = 11 * MiB
    client = RawUpload(live.url, api_key, len(head()) + len(body) + len(TAIL))
    try:
        client.send(head() + body[:sent_first])
        # The client holds back the last 2 MiB: S3 already has parts of this upload.
        assert wait_for(lambda: parts_received(s3)) >= 1
        assert stored_keys(s3) == []  # not an object yet: the upload is still open
        client.send(body[sent_first:] + TAIL)
        status, created = client.response()
    finally:
        client.close()
    assert status == 201, created
    assert created["size"] == len(body)
    assert created["sha256"] == hashlib.sha256(body).hexdigest()
    assert created["mime_type"] == "application/octet-stream"
    row = MessageAttachment.objects.get(pk=created["id"])
    assert stored_keys(s3) == [row.file.name]
    assert s3.get_object(Bucket=BUCKET, Key=row.file.name)["Body"].read() == body
    assert open_uploads(s3) == []


def test_a_client_gone_mid_upload_leaves_nothing_stored(live, api_key, s3):
    body = os.urandom(13 * MiB)
    client = RawUpload(live.url, api_key, len(head()) + len(body) + len(TAIL))
    client.send(head() + body[: 11 * MiB])
    wait_for(lambda: parts_received(s3))
    client.close()
    # The multipart upload is aborted: no object, no open upload, no row.
    wait_for(lambda: open_uploads(s3) == [])
    assert stored_keys(s3) == []
    assert not MessageAttachment.objects.exists()


def test_over_the_limit_mid_stream_is_413_and_nothing_is_stored(live, api_key, s3, settings):
    limit = 6 * MiB  # past the first 5 MiB part: a multipart upload is open by then
    settings.MEDIACACHE = {**settings.MEDIACACHE, "MAX_UPLOAD_BYTES": limit}
    client = RawUpload(live.url, api_key, None)  # chunked: no length to refuse up front
    try:
        client.send(head())
        for _ in range(limit // MiB):
            client.send(os.urandom(MiB))
        client.send(b"x")  # one byte over; the rest of the body is never sent
        status, answer = client.response()
    finally:
        client.close()
    assert status == 413
    assert answer == {"error": f"upload exceeds the limit of {limit} bytes"}
    wait_for(lambda: open_uploads(s3) == [])
    assert stored_keys(s3) == []
    assert not MessageAttachment.objects.exists()


def test_a_bad_key_is_401_before_the_body_is_read(live, s3):
    # 10 MiB announced, none sent: the answer comes without waiting for it.
    client = RawUpload(live.url, "mck_00000000_" + "y" * 40, 10 * MiB)
    try:
        status, answer = client.response()
    finally:
        client.close()
    assert status == 401
    assert "API key" in answer["error"]
    assert stored_keys(s3) == []


def test_no_key_is_401_before_the_body_is_read(live, s3):
    client = RawUpload(live.url, None, 10 * MiB)
    try:
        status, _ = client.response()
    finally:
        client.close()
    assert status == 401


@pytest.mark.parametrize("name", ["voice.ogg", "blob.bin"])
def test_the_answer_is_the_django_views_answer(api, settings, voice_note, name):
    """Field by field the same as Django's view gives for the same file (STREAMING_UPLOADS
    off), and the same JSON as the API's GET of the row."""
    body = voice_note if name == "voice.ogg" else os.urandom(50 * 1024)
    streamed = upload(api, body, name)
    assert api.get(f"/api/attachments/{streamed['id']}").json() == streamed
    settings.STREAMING_UPLOADS = False
    viewed = upload(api, body, name)
    differ = {"id", "media_hash", "short_url", "original_url", "created_at", "expires_at"}
    assert set(streamed) == set(viewed)
    assert {k: v for k, v in streamed.items() if k not in differ} == {
        k: v for k, v in viewed.items() if k not in differ
    }
    assert len(streamed["created_at"]) == len(viewed["created_at"])  # the same format


def test_the_headers_are_the_django_views_headers(api, settings):
    """Django's SecurityMiddleware headers (HSTS on HTTPS, Referrer-Policy, COOP, nosniff)
    and the request id, on a 201 and on a refusal, as the view sends them."""
    compared = ("content-type", "referrer-policy", "cross-origin-opener-policy",
                "x-content-type-options", "strict-transport-security")  # fmt: skip
    https = {"X-Forwarded-Proto": "https"}  # the proxy's header the settings believe

    def headers(**kwargs: object) -> list[dict[str, str | None]]:
        answers = [
            api.post("/api/attachments/", files={"file": ("a.bin", b"\x01" * 100)}, **kwargs),
            api.post("/api/attachments/", files={"nofile": ("a.bin", b"x")}, **kwargs),
        ]
        assert [a.status_code for a in answers] == [201, 400]
        for answer in answers:
            assert answer.headers["x-request-id"]
        return [{name: a.headers.get(name) for name in compared} for a in answers]

    streamed = headers(headers=https)
    assert streamed[0]["strict-transport-security"]  # the test settings' HSTS, on HTTPS
    assert streamed[0]["referrer-policy"]
    echoed = api.post("/api/attachments/", files={"file": ("a.bin", b"x")},
                      headers={"X-Request-ID": "proxy-id-123"})  # fmt: skip
    assert echoed.headers["x-request-id"] == "proxy-id-123"
    settings.STREAMING_UPLOADS = False
    assert headers(headers=https) == streamed


def test_a_voice_note_field_after_the_file_is_taken(api):
    """Form fields may come before or after the file part; the variant follows them."""
    boundary = "b0undary"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="x.bin"\r\n\r\n'
        ).encode()
        + os.urandom(4000)
        + (
            f'\r\n--{boundary}\r\nContent-Disposition: form-data; name="voice_note"\r\n\r\n'
            f"true\r\n--{boundary}--\r\n"
        ).encode()
    )
    response = api.post(
        "/api/attachments/",
        content=body,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert response.status_code == 400  # random bytes as a voice note: not decodable
    assert response.json()["error"].startswith("the file could not be decoded")


def test_the_store_down_is_503_and_nothing_is_kept(api, settings):
    from django.test import override_settings

    from mediacache.engine import reset_engine
    from tests.conftest import s3_storage_settings
    from tests.servers import free_port

    dead = s3_storage_settings(f"http://127.0.0.1:{free_port()}")
    with override_settings(STORAGES={**settings.STORAGES, "default": dead}):
        reset_engine()
        try:
            response = api.post("/api/attachments/", files={"file": ("a.bin", os.urandom(9000))})
        finally:
            reset_engine()
    assert response.status_code == 503
    assert response.json()["error"] == "object store unavailable, nothing was stored"
    assert response.headers["retry-after"] == "5"
    assert not MessageAttachment.objects.exists()


@pytest.mark.parametrize(
    "files",
    [
        {"other": ("a.bin", b"bytes")},  # no file field
        {"file": ("empty.ogg", b"")},
        {"file": ("big.bin", b"x" * 5000)},  # over the limit set below
    ],
)
def test_refusals_are_the_django_views_refusals(api, settings, files):
    settings.MEDIACACHE = {**settings.MEDIACACHE, "MAX_UPLOAD_BYTES": 1000}
    streamed = api.post("/api/attachments/", files=files)
    settings.STREAMING_UPLOADS = False
    viewed = api.post("/api/attachments/", files=files)
    assert (streamed.status_code, streamed.json()) == (viewed.status_code, viewed.json())
    assert not MessageAttachment.objects.exists()
