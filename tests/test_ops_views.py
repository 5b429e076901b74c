"""The operator's page without a browser: access, uploads and their errors, stats.json,
the cache state column, and its static files over real HTTP."""

from __future__ import annotations

import hashlib
import itertools
import re
from datetime import timedelta

import httpx
import pytest
from botocore.config import Config
from django.test import Client

from tests.conftest import s3_storage_settings, upload
from tests.media import pdf, png
from tests.servers import free_port


@pytest.fixture
def staff(db, django_user_model):
    return django_user_model.objects.create_user("op", password="pw", is_staff=True)


@pytest.fixture
def staff_client(staff, redis_client) -> Client:
    client = Client()
    client.force_login(staff)
    return client


def page_upload(client: Client, name: str, body: bytes):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return client.post("/ops/upload/", {"file": SimpleUploadedFile(name, body)})


def state_of(html: str, media_hash: str) -> str:
    row = re.search(rf'<tr data-hash="{media_hash}">(.*?)</tr>', html, re.S)
    assert row, f"{media_hash} is not listed"
    return re.search(r'data-state="([^"]*)"', row.group(1)).group(1)


def session_for(user, live_url: str) -> httpx.Client:
    """A real-HTTP client carrying a logged-in session and the CSRF cookie."""
    django_client = Client()
    django_client.force_login(user)
    http = httpx.Client(base_url=live_url, timeout=30, follow_redirects=False)
    http.cookies.set("sessionid", django_client.cookies["sessionid"].value)
    return http


def csrf_token(http: httpx.Client) -> str:
    page = http.get("/ops/")
    assert page.status_code == 200
    return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)


# --- access --------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/ops/", "/ops/upload/"])
def test_anonymous_is_sent_to_the_admin_login(client, db, path):
    response = client.get(path) if path == "/ops/" else client.post(path)
    assert response.status_code == 302
    assert response["Location"] == f"/admin/login/?next={path}"


def test_non_staff_user_is_sent_to_the_login(client, django_user_model):
    client.force_login(django_user_model.objects.create_user("someone", password="pw"))
    response = client.get("/ops/")
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


def test_stats_json_answers_403_json_rather_than_a_login_page(client, db):
    response = client.get("/ops/stats.json")
    assert response.status_code == 403
    assert response.json() == {"error": "staff login required"}


def test_page_renders_for_staff(staff_client):
    response = staff_client.get("/ops/")
    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="hits"' in html
    assert 'enctype="multipart/form-data"' in html
    assert 'name="csrfmiddlewaretoken"' in html
    assert html.count('data-chart="') == 4
    assert "Nothing uploaded yet." in html
    assert "All replicas and their workers, counted through Redis (standalone" in html


# --- uploads -------------------------------------------------------------------------


def test_upload_stores_the_file_and_shows_its_link_and_player(staff_client, voice_note, s3):
    from chat.models import MessageAttachment
    from tests.conftest import BUCKET

    response = page_upload(staff_client, "voice.ogg", voice_note)
    attachment = MessageAttachment.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/ops/?uploaded={attachment.pk}#upload"
    assert attachment.sha256 == hashlib.sha256(voice_note).hexdigest()
    assert attachment.mime_type == "audio/ogg"
    assert attachment.original_filename == "voice.ogg"
    stored = s3.get_object(Bucket=BUCKET, Key=attachment.file.name)["Body"].read()
    assert stored == voice_note

    html = staff_client.get(response["Location"]).content.decode()
    assert f'<a id="short-link" href="{attachment.short_url}">' in html
    assert (
        f'<audio id="player" controls preload="metadata" src="/media/{attachment.media_hash}"'
        in html
    )


@pytest.mark.parametrize(
    ("name", "body", "player"),
    [
        ("dot.png", png(), '<img id="player"'),
        ("doc.pdf", pdf(), '<a id="player"'),
    ],
)
def test_player_follows_the_real_type(staff_client, name, body, player):
    response = page_upload(staff_client, name, body)
    html = staff_client.get(response["Location"]).content.decode()
    assert player in html


def test_empty_file_is_a_400_with_a_message(staff_client):
    from chat.models import MessageAttachment

    response = page_upload(staff_client, "empty.ogg", b"")
    assert response.status_code == 400
    assert "The file is empty." in response.content.decode()
    assert not MessageAttachment.objects.exists()


def test_missing_file_is_a_400_with_a_message(staff_client):
    response = staff_client.post("/ops/upload/", {"other": "x"})
    assert response.status_code == 400
    assert "Choose a file to upload." in response.content.decode()


def test_upload_without_csrf_token_is_refused(staff):
    from chat.models import MessageAttachment

    client = Client(enforce_csrf_checks=True)
    client.force_login(staff)
    response = page_upload(client, "dot.png", png())
    assert response.status_code == 403
    assert not MessageAttachment.objects.exists()


def test_over_the_limit_is_a_413_with_a_message_over_real_http(live, staff, settings):
    """Past the ASGI body limit's slack, the upload handler's limit: a page, not a 500."""
    from chat.models import MessageAttachment

    settings.MEDIACACHE = {**settings.MEDIACACHE, "MAX_UPLOAD_BYTES": 1000}
    with session_for(staff, live.url) as http:
        token = csrf_token(http)
        response = http.post(
            "/ops/upload/",
            data={"csrfmiddlewaretoken": token},
            files={"file": ("big.bin", b"x" * 5000)},
            headers={"Referer": f"{live.url}/ops/"},
        )
    assert response.status_code == 413
    assert "larger than the limit of 1000" in response.text
    assert not MessageAttachment.objects.exists()


def test_store_down_is_a_503_with_a_message(staff_client, monkeypatch):
    from django.core.files.storage import storages

    from chat.models import MessageAttachment
    from mediacache.engine import get_engine
    from mediacache.store import S3Store

    dead = s3_storage_settings(f"http://127.0.0.1:{free_port()}")
    dead["OPTIONS"]["client_config"] = Config(
        connect_timeout=0.5, read_timeout=0.5, retries={"max_attempts": 0}
    )
    # Uploads write through the engine's store (one shared S3 client).
    monkeypatch.setitem(get_engine().__dict__, "store", S3Store(storages.create_storage(dead)))
    response = page_upload(staff_client, "dot.png", png())
    assert response.status_code == 503
    assert "object store is unavailable; nothing was stored" in response.content.decode()
    assert not MessageAttachment.objects.exists()


def test_upload_over_real_http_with_a_session(live, staff, voice_note):
    with session_for(staff, live.url) as http:
        token = csrf_token(http)
        response = http.post(
            "/ops/upload/",
            data={"csrfmiddlewaretoken": token},
            files={"file": ("voice.ogg", voice_note)},
            headers={"Referer": f"{live.url}/ops/"},
        )
        assert response.status_code == 302
        page = http.get(response.headers["location"])
    link = re.search(r'<a id="short-link" href="([^"]+)"', page.text).group(1)
    assert link.startswith(f"{live.url}/media/")
    assert httpx.get(link).content == voice_note


# --- stats.json ----------------------------------------------------------------------


def test_stats_json_shape(staff_client):
    body = staff_client.get("/ops/stats.json?minutes=5").json()
    assert body["minutes"] == 5
    assert len(body["points"]) == 5
    assert set(body["points"][0]) == {
        "t", "requests", "hit_rate", "p50_ms", "p95_ms", "redis_used_memory", "s3_gets",
    }  # fmt: skip
    minutes = [point["t"] for point in body["points"]]
    assert minutes == sorted(minutes)
    assert all(b - a == 60 for a, b in itertools.pairwise(minutes))
    keys = {"requests", "hits", "hit_rate", "p50_ms", "p95_ms", "s3_gets", "redis_used_memory"}
    assert keys <= set(body["last_hour"])
    assert keys <= set(body["text"])
    assert body["last_hour"]["redis_used_memory"] > 0  # sampled live from Redis


@pytest.mark.parametrize(("asked", "given"), [("0", 1), ("999999", 2880), ("x", 180)])
def test_stats_json_minutes_are_bounded(staff_client, asked, given):
    body = staff_client.get(f"/ops/stats.json?minutes={asked}").json()
    assert body["minutes"] == given
    assert len(body["points"]) == given


def test_stats_count_real_traffic(live, api, staff, voice_note):
    """A miss and a hit on the short link show up in stats.json and on the page."""
    from mediacache.engine import get_engine
    from mediacache.observability.flusher import flush_now

    client = Client()
    client.force_login(staff)
    flush_now(get_engine())
    before = client.get("/ops/stats.json").json()["last_hour"]

    created = upload(api, voice_note, "voice.ogg")
    assert httpx.get(created["short_url"]).headers["x-cache"] == "MISS"
    assert httpx.get(created["short_url"] + "?timestamp=1").headers["x-cache"] == "HIT"
    flush_now(get_engine())

    body = client.get("/ops/stats.json").json()
    after = body["last_hour"]
    assert after["hits"] - before["hits"] >= 1
    assert after["misses"] - before["misses"] >= 1
    assert after["s3_gets"] - before["s3_gets"] >= 1
    assert 0 < after["hit_rate"] <= 1
    assert after["p50_ms"] is not None
    assert body["points"][-1]["requests"] >= 2

    html = client.get("/ops/").content.decode()
    shown = re.search(r'id="hits" data-stat data-value="(\d+)"', html).group(1)
    assert int(shown) >= after["hits"]


# --- cache state ---------------------------------------------------------------------


def test_cache_state_follows_redis(live, api, staff, voice_note):
    from chat.models import MessageAttachment

    client = Client()
    client.force_login(staff)
    created = upload(api, voice_note, "voice.ogg")
    expired = upload(api, png(), "old.png")
    MessageAttachment.objects.filter(pk=expired["id"]).update(
        expires_at=MessageAttachment.objects.get(pk=expired["id"]).created_at - timedelta(1)
    )

    html = client.get("/ops/").content.decode()
    assert state_of(html, created["media_hash"]) == "not cached"
    assert state_of(html, expired["media_hash"]) == "expired"

    assert httpx.get(created["short_url"]).status_code == 200  # a miss fills Redis
    html = client.get("/ops/").content.decode()
    assert state_of(html, created["media_hash"]) == "in Redis"


def test_cache_state_without_redis_is_this_process(staff_client, voice_note, monkeypatch):
    from chat.models import MessageAttachment
    from mediacache.engine import Engine

    engine = Engine.from_django(REDIS_URL="")
    monkeypatch.setattr("ops.views.get_engine", lambda: engine)
    page_upload(staff_client, "voice.ogg", voice_note)
    attachment = MessageAttachment.objects.get()

    html = staff_client.get("/ops/").content.decode()
    assert state_of(html, attachment.media_hash) == "not cached"
    engine.warm(attachment.media_object(), voice_note)
    html = staff_client.get("/ops/").content.decode()
    assert state_of(html, attachment.media_hash) == "in this process"
    assert 'id="redis_used_memory" data-stat data-value="">no Redis' in html


def test_redis_unreachable_still_renders_the_page(staff_client, voice_note, monkeypatch):
    from chat.models import MessageAttachment
    from mediacache.engine import Engine

    page_upload(staff_client, "voice.ogg", voice_note)
    attachment = MessageAttachment.objects.get()
    engine = Engine.from_django(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    monkeypatch.setattr("ops.views.get_engine", lambda: engine)

    response = staff_client.get("/ops/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "Stats unavailable: Redis is unreachable." in html
    assert state_of(html, attachment.media_hash) == "unknown (Redis unreachable)"
    assert staff_client.get("/ops/stats.json").status_code == 503


def test_an_unreadable_stats_file_still_renders_the_page(staff_client, monkeypatch, tmp_path):
    """Without Redis the counters are in a file (observability.timeseries.FileSeries)."""
    from mediacache.engine import Engine
    from mediacache.observability.timeseries import FileSeries

    broken = tmp_path / "stats.sqlite3"
    broken.write_bytes(b"not a database" * 100)
    engine = Engine.from_django(REDIS_URL="")
    engine.__dict__["series"] = FileSeries(broken)
    monkeypatch.setattr("ops.views.get_engine", lambda: engine)

    response = staff_client.get("/ops/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "Stats unavailable: the stats file cannot be read." in html
    assert str(broken) not in html  # the path is in the log, not on the page
    unavailable = staff_client.get("/ops/stats.json")
    assert unavailable.status_code == 503
    assert unavailable.json() == {"error": "stats unavailable: the stats file cannot be read"}


# --- static files ----------------------------------------------------------------


def test_the_page_assets_are_served_by_the_running_service(live, staff):
    """DEBUG is off here, as in production: the page must not depend on it. (The suite
    runs no collectstatic, so the names are plain; the hashed ones are checked under
    scripts/serve.sh in tests/test_static_and_logs.py.)"""
    with session_for(staff, live.url) as http:
        html = http.get("/ops/").text
        urls = re.findall(r'(?:href|src)="(/static/ops/[^"]+)"', html)
        assert len(urls) == 4
        for url in urls:
            assert "?" not in url  # no hand-made cache-busting: whitenoise's hashed names
            response = http.get(url)
            assert response.status_code == 200, url
            assert response.content
            kind = "css" if ".css" in url else "javascript"
            assert kind in response.headers["content-type"]


# --- the WhatsApp gateway's connection ------------------------------------------------


@pytest.fixture
def fresh_gateway_state():
    """The state is cached 30 s per process, per gateway URL (a new double's port)."""
    from mediacache.whatsapp.state import CACHE

    CACHE.clear()
    yield
    CACHE.clear()


def gateway_line(html: str) -> tuple[str, str]:
    """(state, text) of the page's gateway line."""
    found = re.search(
        r'<p id="gateway"[^>]*data-gateway-state="([^"]*)"[^>]*>(.*?)</p>', html, re.S
    )
    assert found, "the page shows no gateway line"
    return found.group(1), " ".join(found.group(2).split())


def test_the_page_shows_the_instance_connected_and_caches_it(
    staff_client, evolution, fresh_gateway_state
):
    state, text = gateway_line(staff_client.get("/ops/").content.decode())
    assert state == "open"
    assert "instance <code>mc-test</code> is <strong>connected (open)</strong>" in text

    evolution.instance_state = "close"  # within 30 s the page shows what it read
    assert gateway_line(staff_client.get("/ops/").content.decode())[0] == "open"
    reads = [c for c in evolution.calls if c["endpoint"] == "connectionState"]
    assert len(reads) == 1


def test_the_page_shows_a_closed_instance_with_the_action(
    staff_client, evolution, fresh_gateway_state
):
    evolution.instance_state = "close"
    state, text = gateway_line(staff_client.get("/ops/").content.decode())
    assert state == "close"
    assert "is <strong>close</strong>" in text
    assert "Connect the instance to WhatsApp" in text
    assert "/instance/connect/mc-test" in text


def test_the_page_names_why_the_state_cannot_be_read(
    staff_client, evolution, settings, fresh_gateway_state
):
    settings.EVOLUTION = {**settings.EVOLUTION, "INSTANCE": "typo"}
    state, text = gateway_line(staff_client.get("/ops/").content.decode())
    assert state == "error"
    assert "EvolutionInstanceNotFound" in text
    assert "Set EVOLUTION_INSTANCE" in text

    evolution.down()
    settings.EVOLUTION = {**settings.EVOLUTION, "INSTANCE": "mc-test"}
    state, text = gateway_line(staff_client.get("/ops/").content.decode())
    assert state == "unreachable"
    assert "EvolutionUnavailable" in text


def test_the_page_says_when_no_gateway_is_configured(staff_client, settings, fresh_gateway_state):
    settings.EVOLUTION = {**settings.EVOLUTION, "API_URL": ""}
    state, text = gateway_line(staff_client.get("/ops/").content.decode())
    assert state == "not configured"
    assert "set EVOLUTION_API_URL" in text


def test_a_send_that_finds_the_instance_closed_refreshes_the_page(
    tasks_worker, staff_client, api, evolution, voice_note, fresh_gateway_state
):
    assert gateway_line(staff_client.get("/ops/").content.decode())[0] == "open"
    evolution.instance_state = "close"
    created = upload(api, voice_note, "voice.ogg")
    sent = api.post(
        "/api/messages/",
        json={"number": "5511999990000", "attachment_id": created["id"]},
        headers={"Prefer": "wait=20"},
    )
    assert sent.json()["error"].startswith("EvolutionInstanceNotConnected")
    assert gateway_line(staff_client.get("/ops/").content.decode())[0] == "close"
