"""PUBLIC_BASE_URL must be a URL Evolution accepts (validator.js isURL defaults)."""

from __future__ import annotations

import pytest

from evolution.urlcheck import rejection_reason
from mediacache.checks import check_public_base_url


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
