"""The short link of a hash, and the retention every attachment gets."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings


def short_url_for(media_hash: str) -> str:
    """``PUBLIC_BASE_URL/media/<hash>``: the one place that knows the link's shape."""
    return f"{settings.PUBLIC_BASE_URL.rstrip('/')}/media/{media_hash}"


def retention() -> timedelta:
    return timedelta(days=settings.MEDIACACHE.get("RETENTION_DAYS", 30))
