"""The engine's configuration, read once from Django's ``settings.MEDIACACHE``."""

from __future__ import annotations

from dataclasses import dataclass, fields

from django.conf import settings


@dataclass(frozen=True, slots=True)
class MediaSettings:
    RESOLVER: str = "mediacache.registry.resolve_media"
    KEY_PREFIX: str = "chat/"
    REDIS_URL: str = ""
    REDIS_TIMEOUT: float = 0.1
    REDIS_RETRY_AFTER: float = 1.0
    CACHE_TTL: int = 7 * 24 * 3600
    RETENTION_DAYS: int = 30
    CACHE_MAX_OBJECT_BYTES: int = 8 * 1024 * 1024
    L1_BYTES: int = 64 * 1024 * 1024
    L1_TTL: float = 60.0
    NEGATIVE_TTL: int = 60
    STORE_RETRY_AFTER: int = 5
    STORE_THREADS: int = 16
    STREAM_CHUNK_BYTES: int = 256 * 1024
    MAX_UPLOAD_BYTES: int = 64 * 1024 * 1024
    WARM_ON_UPLOAD: bool = False
    SINGLE_FLIGHT_WAIT: float = 30.0
    LOCK_TTL_MS: int = 15_000
    LOCK_WAIT: float = 10.0
    LOG_HITS: bool = True
    STATS_INTERVAL: float = 5.0
    METRICS_TOKEN: str = ""
    NOT_FOUND_LIMIT: int = 60
    NOT_FOUND_WINDOW: float = 60.0
    GC_FREEZE: bool = True

    @classmethod
    def from_django(cls, **overrides: object) -> MediaSettings:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in getattr(settings, "MEDIACACHE", {}).items() if k in known}
        values.update(overrides)
        return cls(**values)
