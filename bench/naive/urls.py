"""One route: ``/media/<hash>``, the way the original system served it."""

from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse
from django.urls import path
from django.views.decorators.http import require_GET


@require_GET
def media(request: HttpRequest, media_hash: str) -> HttpResponse:
    """The naive design: one ``cache.get`` (unpickled by django-redis), one HttpResponse."""
    from django.core.cache import cache

    cached = cache.get(f"media:{media_hash}")
    if cached is None:
        raise Http404("not cached")
    return HttpResponse(cached["body"], content_type=cached["content_type"])


urlpatterns = [path("media/<str:media_hash>", media)]
