"""The operator's page at ``/ops/``: upload a file, recent attachments, counters, charts.

Server-rendered with Django templates. One small script (``static/ops/ops.js``)
refreshes the counters and draws the charts with uPlot (vendored in
``static/ops/vendor/``) from ``stats.json`` every few seconds. The static files
go out under STATIC_URL like the admin's (whitenoise, with hashed names that change
when the files do). The views are for staff only.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from dataclasses import dataclass
from typing import Any

import redis
from django.contrib.admin.views.decorators import staff_member_required
from django.core.files.uploadedfile import UploadedFile
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.http.multipartparser import MultiPartParserError
from django.shortcuts import redirect, render
from django.template.defaultfilters import filesizeformat
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_GET, require_POST

from chat.models import MessageAttachment
from chat.services import StoreWriteFailed, create_attachment
from chat.uploads import UploadTooLarge
from mediacache.core.counters import LATENCY_BUCKETS, OUTCOMES
from mediacache.core.settings import media_settings
from mediacache.engine import get_engine
from mediacache.observability.timeseries import StatsFileError, Window
from mediacache.whatsapp.state import GatewayState, gateway_state

logger = logging.getLogger("ops")

RECENT = 20
HOUR = 60
DEFAULT_HOURS = 3
MAX_MINUTES = 2 * 24 * 60  # the per-minute series keeps two days
REFRESH_SECONDS = 5
# The counters at the top of the page: (key, label, target). ``key`` is also the
# element id and the key in stats.json's ``text`` and ``last_hour``.
TILES = (
    ("requests", "Requests", ""),
    ("hits", "Cache hits", ""),
    ("hit_rate", "Hit rate", "aim > 80 %"),
    ("p50_ms", "p50 latency", ""),
    ("p95_ms", "p95 latency", "aim < 50 ms"),
    ("s3_gets", "S3 GETs", "should fall"),
    ("redis_used_memory", "Redis memory", "aim < 500 MB"),
)
# Cache states shown in the recent attachments table.
IN_REDIS, IN_PROCESS, NOT_CACHED = "in Redis", "in this process", "not cached"
EXPIRED, NO_LINK, UNKNOWN = "expired", "no link yet", "unknown (Redis unreachable)"
_CACHE_STATES = {"redis": IN_REDIS, "l1": IN_PROCESS, "": NOT_CACHED, None: UNKNOWN}
NO_DATA = "\N{EN DASH}"


# --- pages -------------------------------------------------------------------------


@require_GET
@staff_member_required
def index(request: HttpRequest) -> HttpResponse:
    """The page; ``?uploaded=<id>`` shows that attachment's link and player."""
    uploaded = None
    if request.GET.get("uploaded", "").isdigit():
        uploaded = MessageAttachment.objects.filter(pk=int(request.GET["uploaded"])).first()
    return _page(request, uploaded=uploaded)


@csrf_exempt  # checked in _store_upload, once the body has been parsed
@require_POST
@staff_member_required
def upload(request: HttpRequest) -> HttpResponse:
    """Store the posted ``file``, then redirect to the page showing its short link.

    The body is parsed before the CSRF check: the size limit is enforced while it
    streams in (``UploadTooLarge``), and Django's CSRF middleware would turn that
    into a 500. Refusing an oversized body before the check stores nothing.
    """
    try:
        request.FILES  # noqa: B018 - parses the multipart body
    except UploadTooLarge as exc:
        limit = filesizeformat(exc.limit)
        return _page(request, error=f"The file is larger than the limit of {limit}.", status=413)
    except MultiPartParserError as exc:
        return _page(request, error=f"The upload could not be read: {exc}", status=400)
    return _store_upload(request)


@csrf_protect
def _store_upload(request: HttpRequest) -> HttpResponse:
    file: UploadedFile | None = request.FILES.get("file")
    if file is None:
        return _page(request, error="Choose a file to upload.", status=400)
    if file.size == 0:
        return _page(request, error="The file is empty.", status=400)
    sha256 = getattr(request, "upload_sha256", {}).get("file") or _sha256_of(file)
    try:
        attachment = create_attachment(file, original_filename=file.name or "", sha256=sha256)
    except StoreWriteFailed:
        return _page(
            request,
            error="The object store is unavailable; nothing was stored. Try again shortly.",
            status=503,
        )
    except DatabaseError:
        logger.exception("[OPS] database error while recording an upload")
        return _page(
            request,
            error="The database is unavailable; nothing was stored. Try again shortly.",
            status=503,
        )
    logger.info("[OPS] %s uploaded %s", request.user.get_username(), attachment.media_hash)
    return redirect(f"{reverse('ops:index')}?uploaded={attachment.pk}#upload")


@require_GET
def stats_json(request: HttpRequest) -> JsonResponse:
    """Per-minute points for the charts and the last hour's counters.

    ``?minutes=N`` (1 to 2880, default 180). Answers 403 rather than a redirect
    to the login page when the session is gone, so the page's script can say so.
    """
    if not (request.user.is_active and request.user.is_staff):
        return JsonResponse({"error": "staff login required"}, status=403)
    minutes = _int_param(request, "minutes", DEFAULT_HOURS * 60, 1, MAX_MINUTES)
    engine = get_engine()
    try:
        window = engine.series.window(max(minutes, HOUR))
    except (redis.RedisError, OSError) as exc:
        logger.warning("[OPS] stats unavailable: %r", exc)
        return JsonResponse({"error": f"stats unavailable: {_why_no_stats(exc)}"}, status=503)
    summary = summarize(
        _tail(window, HOUR), engine.redis_used_memory(), has_redis=engine.writer is not None
    )
    return JsonResponse(
        {
            "minutes": minutes,
            "now": timezone.now().timestamp(),
            "last_hour": summary["values"],
            "text": summary["text"],
            "points": [_finite(point) for point in _tail(window, minutes).per_minute()],
        }
    )


# --- building blocks -----------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One attachment as the page shows it."""

    attachment: MessageAttachment
    state: str

    @property
    def kind(self) -> str:
        return player_kind(self.attachment.mime_type)

    @property
    def src(self) -> str:
        """Same-origin path of the short link, for the player (PUBLIC_BASE_URL may
        name an address or scheme this browser cannot use)."""
        return f"/media/{self.attachment.media_hash}"


def player_kind(mime_type: str) -> str:
    """``audio``, ``image`` or ``video`` when the browser can play it inline; else ``link``."""
    major = mime_type.split("/", 1)[0]
    if major in {"audio", "video"} or (major == "image" and mime_type != "image/svg+xml"):
        return major
    return "link"


def cache_states(attachments: list[MessageAttachment]) -> dict[int, str]:
    """Where each attachment is cached: Redis (one pipeline of EXISTS) when it is
    configured, else this process's in-memory tier."""
    now = timezone.now()
    states: dict[int, str] = {}
    live: list[MessageAttachment] = []
    for attachment in attachments:
        if not attachment.media_hash:
            states[attachment.pk] = NO_LINK
        elif attachment.purged_at or (attachment.expires_at and attachment.expires_at <= now):
            states[attachment.pk] = EXPIRED
        else:
            live.append(attachment)
    if not live:
        return states
    where = get_engine().cached_in([a.media_hash for a in live if a.media_hash])
    for attachment in live:
        tier = where[attachment.media_hash or ""]
        states[attachment.pk] = _CACHE_STATES[tier]
    return states


def recent_rows(limit: int = RECENT) -> list[Row]:
    attachments = list(MessageAttachment.objects.order_by("-created_at", "-pk")[:limit])
    states = cache_states(attachments)
    return [Row(a, states[a.pk]) for a in attachments]


def summarize(
    window: Window, redis_used_memory: int | None, *, has_redis: bool
) -> dict[str, dict[str, Any]]:
    """The counters of a window: raw ``values`` (JSON-safe) and display ``text``."""
    p50, p95 = window.latency_quantile(0.5), window.latency_quantile(0.95)
    values = {
        "requests": sum(window.requests(outcome) for outcome in OUTCOMES),
        "hits": window.hits,
        "misses": window.requests("miss"),
        "hit_rate": window.hit_rate,
        "p50_ms": _ms(p50),
        "p95_ms": _ms(p95),
        "s3_gets": int(window.total("s3:get") + window.total("s3:get_range")),
        "redis_used_memory": redis_used_memory,
    }
    rate = values["hit_rate"]
    text = {
        "requests": f"{values['requests']:,}",
        "hits": f"{values['hits']:,}",
        "hit_rate": NO_DATA if rate is None else f"{rate:.1%}",
        "p50_ms": _latency_text(p50),
        "p95_ms": _latency_text(p95),
        "s3_gets": f"{values['s3_gets']:,}",
        "redis_used_memory": _memory_text(redis_used_memory, has_redis=has_redis),
    }
    return {"values": values, "text": text}


def _stats_scope(engine: Any) -> str:
    """Whose counts the page shows: never one replica's view passed off as the whole."""
    topology = engine.redis_topology
    if engine.writer is None or topology is None:
        return "The processes on this machine (no Redis: other replicas are not counted)."
    return (
        f"All replicas and their workers, counted through Redis ({topology.describe()}; "
        "memory summed over its masters)."
    )


def _page(
    request: HttpRequest,
    *,
    uploaded: MessageAttachment | None = None,
    error: str = "",
    status: int = 200,
) -> HttpResponse:
    hours = _int_param(request, "hours", DEFAULT_HOURS, 1, MAX_MINUTES // 60)
    engine = get_engine()
    try:
        stats = summarize(
            engine.series.window(HOUR),
            engine.redis_used_memory(),
            has_redis=engine.writer is not None,
        )
        stats_error = ""
    except (redis.RedisError, OSError) as exc:
        logger.warning("[OPS] stats unavailable: %r", exc)
        stats, stats_error = None, f"Stats unavailable: {_why_no_stats(exc)}."
    tiles = [
        {
            "key": key,
            "label": label,
            "target": target,
            "text": stats["text"][key] if stats else NO_DATA,
            "value": stats["values"][key] if stats else None,
        }
        for key, label, target in TILES
    ]
    context = {
        "tiles": tiles,
        "stats_scope": _stats_scope(engine),
        "stats_error": stats_error,
        "rows": recent_rows(),
        "uploaded": Row(uploaded, "") if uploaded else None,
        "error": error,
        "hours": hours,
        "hour_choices": (1, 3, 6, 12, 24, 48),
        "minutes": hours * 60,
        "refresh_seconds": REFRESH_SECONDS,
        "max_upload_bytes": media_settings().MAX_UPLOAD_BYTES,
        "gateway": _gateway(),
        **_messages(),
    }
    return render(request, "ops/index.html", context, status=status)


def _gateway() -> dict[str, Any]:
    """The WhatsApp instance's connection (cached 30 s per process): a send to one that
    is not connected fails with an error that does not say so."""
    state: GatewayState = gateway_state()
    age = max(0, round(time.time() - state.checked_at)) if state.checked_at else None
    return {**state.as_dict(), "age_seconds": age}


def _messages() -> dict[str, Any]:
    """The send queue's last hour (chat.activity); the page still loads without it."""
    from chat.activity import last_hour

    try:
        return {"activity": last_hour(), "messages_error": ""}
    except DatabaseError as exc:
        logger.warning("[OPS] message counts unavailable: %r", exc)
        return {"activity": None, "messages_error": "Message counts unavailable: database error."}


def _why_no_stats(exc: Exception) -> str:
    """Without Redis the series is a file (its path and reason are in the log)."""
    if isinstance(exc, StatsFileError):
        return "the stats file cannot be read"
    return "Redis is unreachable"


def _tail(window: Window, minutes: int) -> Window:
    return Window(window.minutes[-minutes:], window.series[-minutes:])


def _ms(seconds: float | None) -> float | None:
    """Seconds to milliseconds; None for no data and for the unbounded top bucket."""
    if seconds is None or math.isinf(seconds):
        return None
    return round(seconds * 1000, 3)


def _latency_text(seconds: float | None) -> str:
    # Quantiles are histogram bucket bounds: "at most" is what is known.
    if seconds is None:
        return NO_DATA
    if math.isinf(seconds):
        return f"> {LATENCY_BUCKETS[-1] * 1000:g} ms"
    return f"≤ {seconds * 1000:g} ms"


def _memory_text(used: int | None, *, has_redis: bool) -> str:
    if not has_redis:
        return "no Redis"
    return "unreachable" if used is None else filesizeformat(used)


def _finite(point: dict[str, Any]) -> dict[str, Any]:
    """JSON has no infinity: an unbounded latency becomes a gap in the chart."""
    return {
        key: None if isinstance(value, float) and not math.isfinite(value) else value
        for key, value in point.items()
    }


def _int_param(request: HttpRequest, name: str, default: int, low: int, high: int) -> int:
    raw = request.GET.get(name, "")
    return min(max(int(raw), low), high) if raw.isdigit() else default


def _sha256_of(file: UploadedFile) -> str:
    """Only when the hashing upload handler is not configured."""
    digest = hashlib.sha256()
    file.seek(0)
    for chunk in file.chunks():
        digest.update(chunk)
    file.seek(0)
    return digest.hexdigest()
