"""Writes to S3: one PutObject for an upload-sized object, multipart above 8 MiB.

upload_fileobj's transfer manager starts threads on every call (about 10 ms for a
50 KB object in the WRITE PATH bench), so small objects go in one request; large ones
keep the multipart upload, in parts of 8 MiB.
"""

from __future__ import annotations

import hashlib
import io
import os

import pytest

from mediacache.store import store_for
from mediacache.store.s3 import SINGLE_PUT_BYTES
from tests.conftest import BUCKET, s3_storage_settings


@pytest.fixture
def store(s3, s3_server):
    from django.core.files.storage import storages

    from tests.conftest import empty_bucket

    empty_bucket(s3)
    yield store_for(storages.create_storage(s3_storage_settings(s3_server.url)))
    empty_bucket(s3)


def requests_for(recorded: list[dict], key: str) -> list[str]:
    return [f"{r['method']} {r['url'].split(key, 1)[1]}" for r in recorded if key in r["url"]]


def test_a_small_object_is_one_put(store, s3, s3_server):
    body = os.urandom(50 * 1024)
    s3_server.start_recording()
    store.write("chat/small.bin", io.BytesIO(body))
    calls = requests_for(s3_server.recorded(), "chat/small.bin")
    assert calls == ["PUT "]
    got = s3.get_object(Bucket=BUCKET, Key="chat/small.bin")
    assert got["Body"].read() == body
    assert got["ContentType"] == "application/octet-stream"


def test_the_rest_of_a_file_from_its_position_is_written(store, s3):
    source = io.BytesIO(b"skip" + b"kept")
    source.seek(4)
    store.write("chat/part.bin", source)
    assert s3.get_object(Bucket=BUCKET, Key="chat/part.bin")["Body"].read() == b"kept"


def test_a_large_object_goes_multipart(store, s3, s3_server, tmp_path):
    path = tmp_path / "large.bin"
    body = os.urandom(SINGLE_PUT_BYTES + 1024)
    path.write_bytes(body)
    s3_server.start_recording()
    with open(path, "rb") as source:
        store.write("chat/large.bin", source)
    calls = requests_for(s3_server.recorded(), "chat/large.bin")
    assert calls[0].startswith("POST ?uploads")
    assert sum(c.startswith("PUT ?") and "partNumber=" in c for c in calls) == 2  # 5 + 3 MiB
    got = s3.get_object(Bucket=BUCKET, Key="chat/large.bin")["Body"].read()
    assert hashlib.sha256(got).digest() == hashlib.sha256(body).digest()
