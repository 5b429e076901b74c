"""The one store adapter, against the S3 endpoint and a local directory: django-storages'
``location`` and object parameters, a FileField's own ``storage=``, listing, bulk
deletes and lifecycle rules, and the whole path from upload to served link."""

from __future__ import annotations

import io
import time

import httpx
import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage, storages
from django.core.management import call_command
from django.test import override_settings

from mediacache.core.objects import MediaObject
from mediacache.store import FileSystemStore, S3Store, store_for
from tests.conftest import BUCKET, s3_storage_settings

pytestmark = pytest.mark.usefixtures("_empty_bucket")


@pytest.fixture
def _empty_bucket(s3):
    from tests.conftest import empty_bucket

    empty_bucket(s3)
    yield
    empty_bucket(s3)


def s3_storage(endpoint: str, **options):
    config = s3_storage_settings(endpoint)
    config["OPTIONS"].update(options)
    return storages.create_storage(config)


def keys_in(s3) -> list[str]:
    return sorted(o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", []))


def test_s3_location_is_where_keys_live_and_is_invisible_to_callers(s3, s3_server):
    store = store_for(s3_storage(s3_server.url, location="media"))
    store.write("chat/2026/12/01/a.ogg", io.BytesIO(b"abc"))
    store.write("chat/2026/12/01/b.ogg", io.BytesIO(b"defg"))
    assert keys_in(s3) == ["media/chat/2026/12/01/a.ogg", "media/chat/2026/12/01/b.ogg"]
    assert store.full_key("chat/x") == "media/chat/x"

    assert store.read("chat/2026/12/01/a.ogg") == b"abc"
    assert b"".join(store.stream("chat/2026/12/01/b.ogg", 1, 2)) == b"ef"
    listed = [o.key for page in store.list("chat/") for o in page]
    assert listed == ["chat/2026/12/01/a.ogg", "chat/2026/12/01/b.ogg"]

    assert store.delete_many(["chat/2026/12/01/a.ogg", "chat/2026/12/01/b.ogg"]) == set()
    assert keys_in(s3) == []


def test_s3_writes_carry_the_storages_object_parameters(s3, s3_server):
    storage = s3_storage(s3_server.url, object_parameters={"CacheControl": "max-age=86400"})
    store_for(storage).write("chat/p.pdf", io.BytesIO(b"%PDF-1.4"))
    head = s3.head_object(Bucket=BUCKET, Key="chat/p.pdf")
    assert head["CacheControl"] == "max-age=86400"
    assert head["ContentType"] == "application/pdf"


def test_s3_listing_pages_and_bulk_delete_reports_nothing_failed(s3, s3_server):
    store = store_for(s3_storage(s3_server.url))
    for i in range(5):
        store.write(f"chat/k{i}", io.BytesIO(b"x"))
    store.write("other/keep", io.BytesIO(b"x"))
    pages = list(store.list("chat/", page_size=2))
    assert [len(p) for p in pages] == [2, 2, 1]
    assert store.delete_many([o.key for p in pages for o in p]) == set()
    assert keys_in(s3) == ["other/keep"]
    with pytest.raises(ValueError, match="at most 1000"):
        store.delete_many([f"k{i}" for i in range(1001)])


def test_local_store_lists_deletes_and_prunes_only_below_the_key_prefix(tmp_path):
    store = store_for(FileSystemStorage(location=str(tmp_path)), key_prefix="chat/")
    assert isinstance(store, FileSystemStore)
    store.write("chat/2026/12/01/a.bin", io.BytesIO(b"a"))
    store.write("chat/2026/12/02/b.bin", io.BytesIO(b"b"))
    assert [o.key for p in store.list("chat/") for o in p] == [
        "chat/2026/12/01/a.bin",
        "chat/2026/12/02/b.bin",
    ]
    assert store.delete_many(["chat/2026/12/01/a.bin", "chat/gone.bin"]) == set()
    assert not (tmp_path / "chat/2026/12/01").exists()  # emptied: pruned
    assert (tmp_path / "chat/2026/12/02/b.bin").exists()
    store.delete("chat/2026/12/02/b.bin")
    assert (tmp_path / "chat").is_dir()  # uploads write here: never removed
    assert list(store.list("chat/")) == []


def test_an_attachment_stored_under_a_location_is_served(
    transactional_db, settings, s3, s3_server, voice_note
):
    """AWS_LOCATION=media: the upload lands under media/chat/..., and the link answers."""
    from chat.services import create_attachment
    from mediacache.engine import reset_engine
    from tests.servers import serve_asgi

    with_location = s3_storage_settings(s3_server.url)
    with_location["OPTIONS"]["location"] = "media"
    with override_settings(STORAGES={**settings.STORAGES, "default": with_location}):
        reset_engine()
        try:
            attachment = create_attachment(
                ContentFile(voice_note, name="v.ogg"), original_filename="v.ogg", sha256=""
            )
            assert all(k.startswith("media/chat/") for k in keys_in(s3))
            from config.asgi import build_application

            with serve_asgi(build_application()) as server:
                response = httpx.get(f"{server.url}/media/{attachment.media_hash}")
            assert response.status_code == 200
            assert response.content == voice_note
        finally:
            reset_engine()


def test_a_field_with_its_own_storage_is_read_through_that_storage(s3, s3_server, tmp_path):
    """A host model's ``FileField(storage=...)``: its objects are not in the default store."""
    from mediacache.engine import Engine

    own = FileSystemStorage(location=str(tmp_path))
    own.save("chat/own.bin", ContentFile(b"from the field's own storage"))
    obj = MediaObject(
        "OwnStorageHash01234567", "chat/own.bin", "application/octet-stream", 28, "",
        time.time() + 3600, "own.bin", storage=own,
    )  # fmt: skip
    engine = Engine.from_django(REDIS_URL="")
    assert isinstance(engine.store, S3Store)
    assert isinstance(engine.store_of(obj), FileSystemStore)
    assert engine.store_of(obj) is engine.store_of(obj)  # one adapter per storage
    assert engine.warm(obj)  # read from the field's storage, not the bucket
    assert engine.cached_in([obj.media_hash, "NotCachedHash0123456789"]) == {
        obj.media_hash: "l1",
        "NotCachedHash0123456789": "",
    }


def test_lifecycle_rule_covers_the_prefix_under_the_location(s3, s3_server, settings):
    with_location = s3_storage_settings(s3_server.url)
    with_location["OPTIONS"]["location"] = "media"
    settings.STORAGES = {**settings.STORAGES, "default": with_location}
    call_command("apply_media_lifecycle", stdout=io.StringIO())
    rules = s3.get_bucket_lifecycle_configuration(Bucket=BUCKET)["Rules"]
    s3.delete_bucket_lifecycle(Bucket=BUCKET)
    assert [r["Filter"]["Prefix"] for r in rules] == ["media/chat/"]


def test_sweeper_under_a_location_deletes_only_orphans(transactional_db, s3, s3_server, settings):
    with_location = s3_storage_settings(s3_server.url)
    with_location["OPTIONS"]["location"] = "media"
    settings.STORAGES = {**settings.STORAGES, "default": with_location}
    store = store_for(storages["default"])
    store.write("chat/orphan.bin", io.BytesIO(b"x"))
    out = io.StringIO()
    call_command("sweep_orphan_objects", "--min-age", "0", stdout=out)
    assert "1 orphan object(s)" in out.getvalue()
    assert keys_in(s3) == []
