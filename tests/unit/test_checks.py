"""PUBLIC_BASE_URL must be a URL Evolution accepts (validator.js isURL defaults)."""

from __future__ import annotations

import pytest

from evolution.urlcheck import rejection_reason
from mediacache.whatsapp.checks import check_public_base_url


@pytest.mark.parametrize(
    "url",
    ["https://backend.example.com", "http://127.0.0.1:8000", "https://api.chat.example.com.br",
     "http://[::1]:8000", "https://xn--bcher-kva.example"],
)  # fmt: skip
def test_accepted(url):
    assert rejection_reason(url) is None


@pytest.mark.parametrize(
    "url",
    ["http://localhost:8000", "http://web:8000", "http://minio", "backend.example.com",
     "ftp2://x.example.com", "http://my_host.example.com", "https://example.c0m",
     "http://" + "a" * 2100 + ".com"],
)  # fmt: skip
def test_rejected(url):
    assert rejection_reason(url)


def test_check_is_an_error_when_evolution_is_configured(settings):
    settings.PUBLIC_BASE_URL = "http://localhost:8000"
    settings.EVOLUTION = {**settings.EVOLUTION, "API_URL": ""}
    assert [m.id for m in check_public_base_url()] == ["mediacache.W001"]
    settings.EVOLUTION = {**settings.EVOLUTION, "API_URL": "https://evo.example.com"}
    (error,) = check_public_base_url()
    assert error.id == "mediacache.E001"
    assert "localhost" in error.msg


def test_server_refuses_to_start_with_a_bad_public_url(settings):
    from django.core.exceptions import ImproperlyConfigured

    from config.asgi import build_application

    settings.PUBLIC_BASE_URL = "http://web:8000"
    settings.EVOLUTION = {**settings.EVOLUTION, "API_URL": "https://evo.example.com",
                          "API_KEY": "k", "INSTANCE": "i"}  # fmt: skip
    with pytest.raises(ImproperlyConfigured, match="PUBLIC_BASE_URL"):
        build_application()


def test_s3_client_waits_are_bounded_and_configurable():
    """The service's settings give the shared S3 client short, configurable timeouts
    (botocore's own are 60 s) and a pool as large as the store threads need."""
    import json
    import os
    import subprocess
    import sys

    probe = (
        "import django, json; django.setup();"
        "from django.core.files.storage import default_storage as s;"
        "c = s.connection.meta.client.meta.config;"
        "print(json.dumps([c.connect_timeout, c.read_timeout, c.retries, "
        "c.max_pool_connections, c.s3]))"
    )
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "S3_BUCKET": "b",
        "S3_ENDPOINT_URL": "http://127.0.0.1:9",
        "S3_READ_TIMEOUT": "2.5",
        "S3_MAX_ATTEMPTS": "1",
        "S3_ADDRESSING_STYLE": "path",
        "SECRET_KEY": "test-only",
    }
    done = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True
    )
    connect, read, retries, pool, s3 = json.loads(done.stdout.strip().splitlines()[-1])
    assert (connect, read, pool) == (3.0, 2.5, 50)
    assert retries == {"total_max_attempts": 1, "mode": "standard"}  # the first one included
    assert s3 == {"addressing_style": "path"}
