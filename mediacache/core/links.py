"""The short link of a hash: the one place that knows the link's shape."""

from __future__ import annotations

from typing import Protocol

from django.conf import settings


class ShortLinked(Protocol):
    """A row with a short link: ``ShortLinkMixin``'s two fields, or the same ones of a
    host model registered in ``MEDIACACHE["MODEL"]`` (checked by ``media_model()``)."""

    media_hash: str | None
    short_url: str | None


def short_url_for(media_hash: str) -> str:
    """``PUBLIC_BASE_URL/media/<hash>``: the one place that knows the link's shape."""
    return f"{settings.PUBLIC_BASE_URL.rstrip('/')}/media/{media_hash}"
