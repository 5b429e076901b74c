"""chat.streaming takes an upload only where Django would reach the view: a host Django
refuses, or plain HTTP under SECURE_SSL_REDIRECT, stays Django's to answer."""

from __future__ import annotations

import pytest
from django.test import override_settings

from chat.streaming import _refused_by_django

PROXIED = ("HTTP_X_FORWARDED_PROTO", "https")


def scope(host: bytes, *extra: tuple[bytes, bytes], scheme: str = "http") -> dict:
    return {"headers": [(b"host", host), *extra], "scheme": scheme}


@pytest.mark.parametrize(
    ("request_scope", "refused"),
    [
        (scope(b"media.example.com"), True),  # plain HTTP: Django redirects it
        (scope(b"media.example.com", (b"x-forwarded-proto", b"https")), False),
        (scope(b"media.example.com:8443", scheme="https"), False),
        (scope(b"evil.example", (b"x-forwarded-proto", b"https")), True),  # Django's 400
        (scope(b"", (b"x-forwarded-proto", b"https")), True),
    ],
)
def test_what_django_would_refuse_goes_to_django(request_scope, refused):
    with override_settings(
        ALLOWED_HOSTS=["media.example.com"],
        SECURE_SSL_REDIRECT=True,
        SECURE_PROXY_SSL_HEADER=PROXIED,
        DEBUG=False,
    ):
        assert _refused_by_django(request_scope) is refused


def test_without_the_redirect_any_allowed_host_is_taken():
    with override_settings(ALLOWED_HOSTS=["*"], SECURE_SSL_REDIRECT=False):
        assert _refused_by_django(scope(b"127.0.0.1:8000")) is False
