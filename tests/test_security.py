"""Public links must not be guessable, secrets must not leak, active content must not run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from mediacache.core.hashes import HASH_BYTES, new_media_hash
from tests.conftest import upload
from tests.servers import serve_asgi
from tests.test_failures import serve_engine

ROOT = Path(__file__).resolve().parent.parent


def test_hashes_carry_at_least_96_bits_from_secrets():
    assert HASH_BYTES * 8 >= 96
    assert len(new_media_hash()) <= 32


@pytest.mark.django_db(transaction=True)
def test_100k_guesses_against_10k_objects_find_nothing(live):
    from chat.models import MessageAttachment

    MessageAttachment.objects.bulk_create(
        MessageAttachment(media_hash=new_media_hash(), mime_type="audio/ogg", size=1, file=f"k{i}")
        for i in range(10_000)
    )
    stored = set(MessageAttachment.objects.values_list("media_hash", flat=True))
    assert len(stored) == 10_000
    guesses = [new_media_hash() for _ in range(100_000)]
    assert not stored.intersection(guesses)
    with httpx.Client(base_url=live.url) as client:  # and over HTTP, a sample of them
        assert {client.get(f"/media/{g}").status_code for g in guesses[:300]} == {404}


def test_repeated_404s_from_one_client_get_429(api, voice_note):
    created = upload(api, voice_note, "v.ogg")
    with serve_engine(NOT_FOUND_LIMIT=5, NOT_FOUND_WINDOW=60) as server:
        url = f"{server.url}/media/{created['media_hash']}"
        assert httpx.get(url).status_code == 200  # cached in this process now
        statuses = [httpx.get(f"{server.url}/media/{new_media_hash()}").status_code
                    for _ in range(8)]  # fmt: skip
        assert statuses == [404] * 5 + [429] * 3
        limited = httpx.get(f"{server.url}/media/{new_media_hash()}")
        assert 0 < int(limited.headers["retry-after"]) <= 61
        assert httpx.get(url).status_code == 200  # links it was given still work


def test_svg_with_script_is_never_served_as_active_content(api):
    svg = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'
    created = upload(api, svg, "logo.svg")
    response = httpx.get(created["short_url"])
    assert response.headers["content-type"] == "application/octet-stream"
    assert response.headers["content-disposition"].startswith("attachment")
    assert response.headers["content-security-policy"] == "default-src 'none'; sandbox"
    assert response.headers["x-content-type-options"] == "nosniff"


def test_upload_limit_is_enforced_while_streaming(api, api_key):
    from chat.models import MessageAttachment

    limit = 100_000
    with serve_engine(MAX_UPLOAD_BYTES=limit) as server:
        headers = {"Authorization": f"Bearer {api_key}"}
        declared = httpx.post(
            f"{server.url}/api/attachments/", headers=headers,
            files={"file": ("big.bin", b"x" * (limit * 3))},
        )  # fmt: skip
        assert declared.status_code == 413  # Content-Length said so: nothing read

        def chunks():  # no Content-Length: counted as it arrives
            boundary = b"--b\r\nContent-Disposition: form-data; name=file; filename=x\r\n\r\n"
            yield boundary
            for _ in range(400):
                yield b"y" * 16_384  # 6.5 MB in all, far over the limit

        streamed = httpx.post(
            f"{server.url}/api/attachments/",
            headers={**headers, "Content-Type": "multipart/form-data; boundary=b"},
            content=chunks(),
        )
        assert streamed.status_code == 413
        assert streamed.json()["error"] == "upload too large"
    assert not MessageAttachment.objects.exists()


def test_a_host_route_outside_the_limited_prefixes_reads_its_whole_body(live, settings):
    """with_media(limit_paths=...) in a host project: only those prefixes get the
    engine's 413; a body over the limit elsewhere reaches Django whole."""
    from django.core.asgi import get_asgi_application

    from mediacache.asgi import with_media
    from mediacache.engine import Engine

    settings.EVOLUTION = {**settings.EVOLUTION, "WEBHOOK_SECRET": "s"}
    limit = 10_000
    engine = Engine.from_django(MAX_UPLOAD_BYTES=limit)
    app = with_media(get_asgi_application(), engine, limit_paths=("/api/",))
    over = limit + 64 * 1024 + 50_000  # past the limit and its multipart allowance
    body = b'{"event": "connection.update", "pad": "' + b"A" * over + b'"}'
    with serve_asgi(app) as server:
        elsewhere = httpx.post(
            f"{server.url}/webhooks/evolution/",
            content=body,
            headers={"X-Webhook-Secret": "s", "Content-Type": "application/json"},
        )
        assert elsewhere.status_code == 200, elsewhere.text  # Django parsed all of it
        assert elsewhere.json() == {"status": "ignored"}
        limited = httpx.post(f"{server.url}/api/attachments/", content=body)
        assert limited.status_code == 413
        assert limited.json() == {"error": "upload too large"}


def test_webhook_body_over_the_limit_is_413(live, settings):
    settings.EVOLUTION = {**settings.EVOLUTION, "WEBHOOK_SECRET": "s"}
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    response = httpx.post(
        f"{live.url}/webhooks/evolution/",
        content=b'{"event": "messages.upsert", "data": "' + b"A" * 20_000 + b'"}',
        headers={"X-Webhook-Secret": "s", "Content-Type": "application/json"},
    )
    assert response.status_code == 413


def test_error_reports_hide_credentials(settings):
    from django.views.debug import get_default_exception_reporter_filter

    settings.REDIS_URL = "redis://:hunter2@redis.internal:6379/0"
    settings.EVOLUTION = {**settings.EVOLUTION, "API_KEY": "evo-very-secret"}
    safe = str(get_default_exception_reporter_filter().get_safe_settings())
    for secret in ("hunter2", "evo-very-secret", "tests-only-not-secret"):
        assert secret not in safe
    assert "redis.internal" in safe  # the rest of the URL stays useful


def test_evolution_key_never_reaches_the_logs(tasks_worker, api, voice_note, settings, caplog):
    from tests.evolution_double import EvolutionDouble

    created = upload(api, voice_note, "v.ogg")
    with EvolutionDouble(api_key="right") as double:
        settings.EVOLUTION = {**settings.EVOLUTION, "API_URL": double.url,
                              "API_KEY": "wrong-key-9f8e7d", "INSTANCE": "mc-test"}  # fmt: skip
        response = api.post("/api/messages/", json={"number": "5511999990000",
                                                    "attachment_id": created["id"]},
                            headers={"Prefer": "wait=20"})  # fmt: skip
    assert response.status_code == 502
    assert "wrong-key-9f8e7d" not in caplog.text
    assert "wrong-key-9f8e7d" not in response.text
    assert "[CHAT] Evolution API response: status 401" in caplog.text


def _check_deploy(extra_env: dict[str, str], fail_level: str) -> subprocess.CompletedProcess:
    env = {
        "PATH": os.environ["PATH"],
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "MEDIACACHE_READ_DOTENV": "0",  # this environment only, never a developer's .env
        "SECRET_KEY": "x7!" * 20 + "production-grade-secret-key-value",
        "ALLOWED_HOSTS": "backend.example.com",
        "PUBLIC_BASE_URL": "https://backend.example.com",
        "MEDIACACHE_VAR_DIR": "/tmp/mediacache-check-deploy",
        **extra_env,
    }
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", fail_level],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_production_settings_pass_check_deploy():
    defaults = _check_deploy({}, "ERROR")
    assert defaults.returncode == 0, defaults.stderr
    strict = _check_deploy(
        {"SECURE_HSTS_SECONDS": "31536000", "SECURE_HSTS_INCLUDE_SUBDOMAINS": "true",
         "SECURE_HSTS_PRELOAD": "true"},
        "WARNING",
    )  # fmt: skip
    assert strict.returncode == 0, strict.stderr + strict.stdout
    debug = _check_deploy({"DEBUG": "true"}, "WARNING")
    assert debug.returncode != 0  # DEBUG in production is reported
