"""POST /api/attachments/: auth, validation, durable storage, the OpenAPI schema."""

from __future__ import annotations

import hashlib
import re

import httpx
import pytest

from tests.conftest import BUCKET, upload
from tests.media import png


def test_upload_returns_short_link_and_stores_the_bytes(api, live, voice_note, s3):
    from chat.models import MessageAttachment

    created = upload(api, voice_note, "../../etc/passwd voice.ogg")
    assert set(created) >= {"id", "media_hash", "short_url", "mime_type", "size", "sha256"}
    assert created["short_url"] == f"{live.url}/media/{created['media_hash']}"
    assert created["mime_type"] == "audio/ogg"
    assert created["size"] == len(voice_note)
    assert created["sha256"] == hashlib.sha256(voice_note).hexdigest()

    row = MessageAttachment.objects.get(pk=created["id"])
    assert re.fullmatch(r"chat/\d{4}/\d{2}/\d{2}/[0-9a-f]{32}\.ogg", row.file.name)
    stored = s3.get_object(Bucket=BUCKET, Key=row.file.name)["Body"].read()
    assert stored == voice_note
    assert row.original_filename == "passwd voice.ogg"  # the path part is dropped
    assert (row.expires_at - row.created_at).days == 30


def test_client_content_type_is_ignored(api):
    response = api.post("/api/attachments/", files={"file": ("clip.mp4", png(), "video/mp4")})
    assert response.status_code == 201
    assert response.json()["mime_type"] == "image/png"


def test_large_upload_spools_and_hashes(api):
    body = bytes(range(256)) * 40_000  # 10 MB: goes through a temporary file
    created = upload(api, body, "blob.bin")
    assert created["size"] == len(body)
    assert created["sha256"] == hashlib.sha256(body).hexdigest()
    response = httpx.get(created["short_url"], timeout=30)
    assert response.content == body
    assert response.headers["x-cache"] == "MISS"


@pytest.mark.parametrize(
    "header", [None, "Bearer nope", "Bearer mck_00000000_x" + "y" * 40, "Basic x"]
)
def test_missing_or_bad_key_is_401(live, header):
    headers = {"Authorization": header} if header else {}
    response = httpx.post(
        f"{live.url}/api/attachments/", files={"file": ("a.png", png())}, headers=headers
    )
    assert response.status_code == 401
    assert "API key" in response.json()["error"]


def test_revoked_key_is_401(api, api_key):
    from chat.models import ApiKey

    ApiKey.objects.update(is_active=False)
    response = api.post("/api/attachments/", files={"file": ("a.png", png())})
    assert response.status_code == 401


def test_empty_file_is_400(api):
    from chat.models import MessageAttachment

    response = api.post("/api/attachments/", files={"file": ("empty.ogg", b"")})
    assert response.status_code == 400
    assert response.json()["error"] == "the file is empty"
    assert not MessageAttachment.objects.exists()


def test_missing_file_field_is_400(api):
    response = api.post("/api/attachments/", files={"other": ("a.png", png())})
    assert response.status_code == 400
    assert response.json()["error"] == "invalid request"


def test_truncated_multipart_is_400(api):
    boundary = "xyzzy"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.bin"\r\n'
        "Content-Type: application/octet-stream\r\n\r\nsome bytes but no closing boundary"
    ).encode()
    response = api.post(
        "/api/attachments/",
        content=body,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert response.status_code == 400


def test_over_the_limit_is_413_and_nothing_is_stored(api, settings, s3):
    from chat.models import MessageAttachment

    settings.MEDIACACHE = {**settings.MEDIACACHE, "MAX_UPLOAD_BYTES": 1000}
    response = api.post("/api/attachments/", files={"file": ("big.bin", b"x" * 5000)})
    assert response.status_code == 413
    assert "1000 bytes" in response.json()["error"]
    assert not MessageAttachment.objects.exists()
    assert s3.list_objects_v2(Bucket=BUCKET).get("KeyCount", 0) == 0


def test_get_and_delete_attachment(api, voice_note):
    created = upload(api, voice_note, "v.ogg")
    assert (
        api.get(f"/api/attachments/{created['id']}").json()["media_hash"] == created["media_hash"]
    )
    assert httpx.get(created["short_url"]).status_code == 200
    assert httpx.get(created["short_url"]).headers["x-cache"] == "HIT"
    assert api.delete(f"/api/attachments/{created['id']}").status_code == 204
    assert httpx.get(created["short_url"]).status_code == 404
    assert api.get(f"/api/attachments/{created['id']}").status_code == 404


def test_openapi_schema_is_served(live):
    schema = httpx.get(f"{live.url}/api/openapi.json").json()
    assert "/api/attachments/" in schema["paths"]
    assert schema["components"]["securitySchemes"]


def test_api_docs_work_offline(live):
    """Swagger UI comes from django-ninja's bundled static files, served by the service
    itself: no CDN, so /api/docs is not a blank page on a machine without internet."""
    page = httpx.get(f"{live.url}/api/docs")
    assert page.status_code == 200
    html = page.text
    urls = re.findall(r'(?:href|src)="([^"]+)"', html)
    assert any(url.endswith("swagger-ui-bundle.js") for url in urls), html
    assert any(url.endswith("swagger-ui.css") for url in urls), html
    assert not re.search(r"https?://", html), "the page names an outside host"
    for url in urls:
        assert url.startswith("/static/"), url
        asset = httpx.get(f"{live.url}{url}")
        assert asset.status_code == 200, url
        assert asset.content
    assert "/api/openapi.json" in html  # what Swagger UI then loads, from the same service
