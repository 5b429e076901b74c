"""The admin adds an attachment by uploading a file through the API's own code, and never
answers 500 for a bad file: the form says what is wrong and nothing is stored."""

from __future__ import annotations

import hashlib
import io

import httpx
import pytest
from botocore.config import Config
from django.conf import settings as django_settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client, override_settings

from tests.conftest import BUCKET, empty_bucket, s3_storage_settings
from tests.media_gen import audio
from tests.servers import free_port

ADD = "/admin/chat/messageattachment/add/"


@pytest.fixture
def admin_client(db, django_user_model, s3, redis_client) -> Client:
    """A staff user allowed to add and view attachments, and an empty bucket."""
    from django.contrib.auth.models import Permission

    empty_bucket(s3)
    user = django_user_model.objects.create_user("editor", password="pw", is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(
            content_type__app_label="chat",
            codename__in=["add_messageattachment", "view_messageattachment"],
        )
    )
    client = Client()
    client.force_login(user)
    return client


def stored_keys(s3) -> list[str]:
    return [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])]


def add(client: Client, name: str, body: bytes, **fields):
    return client.post(ADD, {"upload": SimpleUploadedFile(name, body), **fields})


def test_the_add_form_asks_for_a_file(admin_client):
    response = admin_client.get(ADD)
    assert response.status_code == 200
    html = response.content.decode()
    assert 'type="file" name="upload"' in html
    assert 'name="size"' not in html
    assert 'name="sha256"' not in html


def test_adding_uploads_the_file_like_the_api(admin_client, s3, voice_note):
    from chat.models import MessageAttachment

    response = add(admin_client, "note.ogg", voice_note)
    assert response.status_code == 302, response.content.decode()[:2000]

    attachment = MessageAttachment.objects.get()
    assert attachment.size == len(voice_note)
    assert attachment.sha256 == hashlib.sha256(voice_note).hexdigest()
    assert attachment.mime_type == "audio/ogg"
    assert attachment.original_filename == "note.ogg"
    assert attachment.media_hash
    assert attachment.short_url.endswith(attachment.media_hash)
    assert attachment.expires_at is not None
    assert attachment.variant_mime_type == "audio/ogg; codecs=opus"  # the API's variant step
    stored = s3.get_object(Bucket=BUCKET, Key=attachment.file.name)["Body"].read()
    assert stored == voice_note
    assert stored_keys(s3) == [attachment.file.name]  # Ogg Opus mono: passed through


def test_an_image_whatsapp_does_not_show_gets_its_jpeg(admin_client, s3, live):
    from PIL import Image

    from chat.models import MessageAttachment

    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), (200, 10, 10)).save(buffer, "WEBP")
    assert add(admin_client, "pic.webp", buffer.getvalue()).status_code == 302
    attachment = MessageAttachment.objects.get()
    assert attachment.mime_type == "image/webp"
    assert attachment.variant_mime_type == "image/jpeg"
    assert sorted(stored_keys(s3)) == sorted([attachment.file.name, attachment.variant.name])
    served = httpx.get(f"{live.url}/media/{attachment.media_hash}")
    assert served.status_code == 200
    assert served.headers["content-type"] == "image/jpeg"


def test_adding_to_a_message(admin_client, voice_note):
    from chat.models import Message, MessageAttachment

    message = Message.objects.create(direction=Message.Direction.OUTBOUND, number="551199")
    assert add(admin_client, "n.ogg", voice_note, message=str(message.pk)).status_code == 302
    assert MessageAttachment.objects.get().message == message


@pytest.mark.parametrize(
    ("name", "body", "error"),
    [
        ("empty.ogg", b"", "The submitted file is empty."),
        ("broken.ogg", audio("ogg_opus_mono", 1.0)[:200] + b"\0" * 4000, "could not be decoded"),
        ("x.heic", b"\0\0\0\x18ftypheic\0\0\0\0heicmif1" + b"\0" * 400, "could not be decoded"),
    ],
    ids=["empty", "undecodable-audio", "undecodable-image"],
)
def test_a_bad_file_is_a_form_error_and_nothing_is_stored(admin_client, s3, name, body, error):
    from chat.models import MessageAttachment

    response = add(admin_client, name, body)
    assert response.status_code == 200
    html = response.content.decode()
    assert "errornote" in html
    assert error in html
    assert "/tmp" not in html
    assert not MessageAttachment.objects.exists()
    assert stored_keys(s3) == []


def test_no_file_is_a_form_error(admin_client):
    response = admin_client.post(ADD, {})
    assert response.status_code == 200
    assert "This field is required." in response.content.decode()


def test_store_down_is_a_form_error(admin_client, voice_note):
    """An S3 endpoint that refuses connections: the form says so, nothing is recorded."""
    from chat.models import MessageAttachment
    from mediacache.engine import reset_engine

    storage = s3_storage_settings(f"http://127.0.0.1:{free_port()}")
    storage["OPTIONS"]["client_config"] = Config(
        connect_timeout=0.5, retries={"total_max_attempts": 1}
    )
    with override_settings(STORAGES={**django_settings.STORAGES, "default": storage}):
        reset_engine()
        try:
            response = add(admin_client, "n.ogg", voice_note)
        finally:
            reset_engine()
    assert response.status_code == 200
    assert "The object store is unavailable; nothing was stored." in response.content.decode()
    assert not MessageAttachment.objects.exists()


def test_the_change_page_still_shows_the_stored_fields(admin_client, voice_note):
    from chat.models import MessageAttachment

    assert add(admin_client, "n.ogg", voice_note).status_code == 302
    attachment = MessageAttachment.objects.get()
    page = admin_client.get(f"/admin/chat/messageattachment/{attachment.pk}/change/")
    assert page.status_code == 200
    html = page.content.decode()
    assert attachment.media_hash in html
    assert attachment.sha256 in html


def test_a_file_over_the_limit_is_refused_without_a_500(admin_client, settings, voice_note):
    from chat.models import MessageAttachment

    settings.MEDIACACHE = {**settings.MEDIACACHE, "MAX_UPLOAD_BYTES": 1000}
    response = add(admin_client, "n.ogg", voice_note)
    assert response.status_code == 400  # Django's answer to a body over its limit
    assert not MessageAttachment.objects.exists()


def test_over_real_http_with_the_csrf_check(live, admin_client, settings, voice_note):
    """On the running service the CSRF check reads the body before the admin does: an
    oversized file is still a 400, and a good one is added."""
    import re

    from chat.models import MessageAttachment

    with httpx.Client(base_url=live.url, timeout=30) as http:
        http.cookies.set("sessionid", admin_client.cookies["sessionid"].value)
        page = http.get(ADD)
        assert page.status_code == 200
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)

        def post(body: bytes) -> httpx.Response:
            return http.post(
                ADD,
                data={"csrfmiddlewaretoken": token},
                files={"upload": ("n.ogg", body)},
                headers={"Referer": f"{live.url}{ADD}"},
            )

        settings.MEDIACACHE = {**settings.MEDIACACHE, "MAX_UPLOAD_BYTES": 1000}
        assert post(voice_note).status_code == 400
        assert not MessageAttachment.objects.exists()
        settings.MEDIACACHE = {**settings.MEDIACACHE, "MAX_UPLOAD_BYTES": 10_000_000}
        added = post(voice_note)
        assert added.status_code == 302, added.text[:2000]
    assert MessageAttachment.objects.get().size == len(voice_note)
