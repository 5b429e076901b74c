"""Every key of ``settings.MEDIACACHE`` with its default, read in this one place.

The engine, the WhatsApp wing, the commands and the host app read the same object,
so a default is written once. A key this class does not know is a configuration
mistake (``L1_BYTE`` for ``L1_BYTES``): :func:`unknown_keys` names it with the
closest valid key, and the ``mediacache`` system check (``mediacache.checks``)
turns that into an error at start-up.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import timedelta
from typing import Any

from django.conf import settings


@dataclass(frozen=True, slots=True)
class MediaSettings:
    # -- the host app's attachment model (mediacache.registry) and its resolver
    MODEL: str = ""
    FIELDS: Mapping[str, str | None] = field(default_factory=dict)
    RESOLVER: str = "mediacache.registry.resolve_media"
    # -- links, retention and the object store
    KEY_PREFIX: str = "chat/"
    RETENTION_DAYS: int = 30
    MAX_UPLOAD_BYTES: int = 64 * 1024 * 1024
    STORE_RETRY_AFTER: int = 5
    STORE_THREADS: int = 16
    STREAM_CHUNK_BYTES: int = 256 * 1024
    # -- cache tiers
    # One Redis topology (mediacache.tiers.topology): a standalone server by URL, a
    # master found through Sentinel, or a Cluster by its seed nodes (host:port each).
    REDIS_URL: str = ""
    REDIS_SENTINELS: Sequence[str] = ()
    REDIS_SENTINEL_MASTER: str = ""
    REDIS_CLUSTER_NODES: Sequence[str] = ()
    # Credentials of the data nodes under Sentinel or Cluster (a standalone URL carries its
    # own), and of the sentinels themselves; the database number under Sentinel.
    REDIS_USERNAME: str = ""
    REDIS_PASSWORD: str = ""
    REDIS_SENTINEL_USERNAME: str = ""
    REDIS_SENTINEL_PASSWORD: str = ""
    REDIS_DB: int = 0
    # TLS to Sentinel's and Cluster's nodes (a standalone server: its rediss:// URL); the CA
    # that verifies them and the client's certificate, for rediss:// URLs too.
    REDIS_TLS: bool = False
    REDIS_TLS_CA_FILE: str = ""
    REDIS_TLS_CERT_FILE: str = ""
    REDIS_TLS_KEY_FILE: str = ""
    # Seconds between the heartbeats each process sends itself through the invalidation
    # channel; one not back within three of them is a gap (L1 flushed, subscription renewed).
    INVALIDATION_HEARTBEAT: float = 0.5
    # Seconds between two L1 flushes while the invalidation channel stays down (a purge
    # Redis could not announce lives in L1 at most this long; each flush costs a store
    # read per hot object and process).
    INVALIDATION_GAP_FLUSH_EVERY: float = 5.0
    REDIS_TIMEOUT: float = 0.1
    REDIS_RETRY_AFTER: float = 1.0
    CACHE_TTL: int = 7 * 24 * 3600
    CACHE_MAX_OBJECT_BYTES: int = 8 * 1024 * 1024
    L1_BYTES: int = 64 * 1024 * 1024
    L1_TTL: float = 60.0
    NEGATIVE_TTL: int = 60
    WARM_ON_UPLOAD: bool = False
    SINGLE_FLIGHT_WAIT: float = 30.0
    LOCK_TTL_MS: int = 15_000
    LOCK_WAIT: float = 10.0
    # -- serving and observability
    LOG_HITS: bool = True
    STATS_INTERVAL: float = 5.0
    METRICS_TOKEN: str = ""
    NOT_FOUND_LIMIT: int = 60
    NOT_FOUND_WINDOW: float = 60.0
    # Database lookups a second, per process, shared by all clients past NOT_FOUND_LIMIT
    # (they wait their turn, never refused: mediacache.serving.ratelimit).
    LIMITED_LOOKUPS_PER_SECOND: float = 20.0
    # Proxies whose X-Forwarded-For is believed (CIDRs): the client is the rightmost
    # address not in them (mediacache.serving.clients).
    TRUSTED_PROXIES: Sequence[str] = ("127.0.0.1/32", "::1/128")
    # Paths answered before the host's Django ("" = not served, the path is the host's):
    # off by default so a host's own /healthz or django-prometheus' /metrics stay its own.
    HEALTH_PATH: str = ""
    READY_PATH: str = ""
    METRICS_PATH: str = ""
    # gc.freeze() at a worker's start: right for the service's workers, a surprise
    # inside a host's process, so off unless asked for (the service turns it on).
    GC_FREEZE: bool = False
    # The L1-hit shortcut of mediacache.fastpath (only under its --http protocol):
    # False makes every request take the ASGI path, through the host's middleware.
    FAST_PATH: bool = True
    # -- a shared cache in front (CDN, Varnish, nginx): how long it may keep an object
    # (s-maxage), and the purge a delete sends it (mediacache.edge). EDGE_PURGE: ""
    # (none), "cloudflare", "fastly", "cloudfront", "varnish" or "nginx".
    EDGE_MAX_AGE: int = 3600
    EDGE_PURGE: str = ""
    EDGE_PURGE_URLS: Sequence[str] = ()
    EDGE_ZONE_ID: str = ""
    EDGE_API_TOKEN: str = ""
    EDGE_PURGE_BY: str = "tags"
    EDGE_PURGE_TIMEOUT: float = 5.0
    EDGE_PURGE_ATTEMPTS: int = 3
    # -- WhatsApp-ready media (mediacache.media, mediacache.whatsapp): WhatsApp's limits
    VOICE_VARIANTS: bool = True
    VOICE_SAMPLE_RATE: int = 48000
    VOICE_BITRATE: int = 24000
    VOICE_PLAY_BUTTON_BYTES: int = 512 * 1024
    TRANSCODE_TIMEOUT: float = 60.0
    TRANSCODE_NICE: int = 10
    # Long-lived conversion processes per web process (mediacache.media.pool), started
    # at the first conversion; one whose memory passes TRANSCODE_MAX_MEMORY is killed.
    TRANSCODE_WORKERS: int = 2
    TRANSCODE_MAX_MEMORY: int = 1024 * 1024 * 1024
    # Workers started in the background when the process starts serving, so the first
    # upload does not wait 125-200 ms for one (0: at the first conversion; a host
    # project's processes may never convert, so its default is 0; the service's is 1).
    TRANSCODE_PREWARM: int = 0
    IMAGE_MAX_BYTES: int = 5 * 1024 * 1024
    IMAGE_MAX_SIDE: int = 4096
    VIDEO_MAX_BYTES: int = 16 * 1024 * 1024
    DOCUMENT_MAX_BYTES: int = 100 * 1024 * 1024

    @property
    def has_redis(self) -> bool:
        """Whether a Redis topology is configured (else L1 is the only cache)."""
        return bool(self.REDIS_URL or self.REDIS_SENTINELS or self.REDIS_CLUSTER_NODES)

    @property
    def retention(self) -> timedelta:
        """How long an attachment is kept in the store (and its link lives)."""
        return timedelta(days=self.RETENTION_DAYS)

    @classmethod
    def from_django(cls, **overrides: Any) -> MediaSettings:
        """``settings.MEDIACACHE`` over the defaults; unknown keys are left to the check."""
        known = KNOWN_KEYS
        values = {k: v for k, v in _configured().items() if k in known}
        values.update(overrides)
        return cls(**values)


KNOWN_KEYS = frozenset(f.name for f in fields(MediaSettings))


def media_settings() -> MediaSettings:
    """The settings as they are now (read each call: tests and hosts change them)."""
    return MediaSettings.from_django()


def _configured() -> Mapping[str, Any]:
    return getattr(settings, "MEDIACACHE", None) or {}


def unknown_keys(config: Mapping[str, Any] | None = None) -> list[tuple[str, str | None]]:
    """Each key of ``config`` (default ``settings.MEDIACACHE``) that is not a setting,
    with the closest valid key, or None when nothing is close."""
    config = _configured() if config is None else config
    found = []
    for key in sorted(str(k) for k in config if k not in KNOWN_KEYS):
        close = difflib.get_close_matches(key.upper(), KNOWN_KEYS, n=1, cutoff=0.6)
        found.append((key, close[0] if close else None))
    return found
