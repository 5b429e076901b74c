"""Bearer-key authentication for the API."""

from __future__ import annotations

from ninja.security import HttpBearer

from .models import ApiKey


class ApiKeyAuth(HttpBearer):
    """``Authorization: Bearer mck_…``; keys come from ``manage.py create_api_key``."""

    def authenticate(self, request, token: str) -> ApiKey | None:
        return ApiKey.objects.verify(token)
