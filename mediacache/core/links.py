"""The short link of a hash: the one place that knows the link's shape."""

from __future__ import annotations

from django.conf import settings


def short_url_for(media_hash: str) -> str:
    """``PUBLIC_BASE_URL/media/<hash>``: the one place that knows the link's shape."""
    return f"{settings.PUBLIC_BASE_URL.rstrip('/')}/media/{media_hash}"
