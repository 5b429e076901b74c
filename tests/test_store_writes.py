"""Writes to S3: one PutObject for an upload-sized object, multipart above 8 MiB.

upload_fileobj's transfer manager starts threads on every call (about 10 ms for a
50 KB object in the WRITE PATH bench), so small objects go in one request; large ones
keep the multipart upload, in parts of 8 MiB.

A streamed write (``open_writer``, the streaming upload's) sends its parts while later
chunks are still to come, and an aborted one leaves neither object nor open upload.
"""

from __future__ import annotations

import hashlib
import io
import os

import pytest

from mediacache.store import store_for
from mediacache.store.s3 import SINGLE_PUT_BYTES
from mediacache.store.s3_stream import PART_BYTES
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


def test_a_streamed_small_object_is_one_put(store, s3, s3_server):
    s3_server.start_recording()
    writer = store.open_writer("chat/streamed-small.ogg")
    for _ in range(5):
        writer.write(b"x" * 1000)
    writer.commit()
    assert requests_for(s3_server.recorded(), "chat/streamed-small.ogg") == ["PUT "]
    got = s3.get_object(Bucket=BUCKET, Key="chat/streamed-small.ogg")
    assert got["Body"].read() == b"x" * 5000
    assert got["ContentType"] == "audio/ogg"


def test_streamed_parts_leave_before_the_object_ends(store, s3):
    body = os.urandom(3 * PART_BYTES + 1234)
    writer = store.open_writer("chat/streamed.bin")
    chunk = 256 * 1024
    for start in range(0, 2 * PART_BYTES + chunk, chunk):
        writer.write(body[start : start + chunk])
    (upload,) = s3.list_multipart_uploads(Bucket=BUCKET)["Uploads"]
    parts = s3.list_parts(Bucket=BUCKET, Key=upload["Key"], UploadId=upload["UploadId"])
    assert len(parts.get("Parts", [])) >= 1  # the first part is in S3, the rest not written yet
    for start in range(2 * PART_BYTES + chunk, len(body), chunk):
        writer.write(body[start : start + chunk])
    writer.commit()
    got = s3.get_object(Bucket=BUCKET, Key="chat/streamed.bin")["Body"].read()
    assert hashlib.sha256(got).digest() == hashlib.sha256(body).digest()
    assert s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []


def test_an_aborted_stream_leaves_no_upload_and_no_object(store, s3):
    writer = store.open_writer("chat/aborted.bin")
    writer.write(os.urandom(2 * PART_BYTES + 1))
    assert s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads")
    writer.abort()
    assert s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []
    committed = store.open_writer("chat/committed.bin")
    committed.write(b"kept, then not")
    committed.commit()
    committed.abort()  # e.g. the row could not be written: the object goes too
    assert s3.list_objects_v2(Bucket=BUCKET).get("KeyCount", 0) == 0


def test_the_local_store_renames_a_finished_stream_into_place(tmp_path):
    from django.core.files.storage import FileSystemStorage

    local = store_for(FileSystemStorage(location=str(tmp_path)), key_prefix="chat/")
    writer = local.open_writer("chat/2026/12/01/a.bin")
    writer.write(b"first ")
    writer.write(b"second")
    assert not (tmp_path / "chat/2026/12/01/a.bin").exists()  # not visible before commit
    writer.commit()
    assert (tmp_path / "chat/2026/12/01/a.bin").read_bytes() == b"first second"
    assert sorted(p.name for p in (tmp_path / "chat/2026/12/01").iterdir()) == ["a.bin"]
    gone = local.open_writer("chat/2026/12/01/b.bin")
    gone.write(b"never kept")
    gone.abort()
    assert sorted(p.name for p in (tmp_path / "chat/2026/12/01").iterdir()) == ["a.bin"]
