"""One engine per process: the tiers, the store and the service, wired from settings.

The serving app and the write side (warm after upload, purge on delete) share
it, so a purge reaches this process's L1 at once and Redis for everyone.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import cached_property
from typing import BinaryIO

from django.core.files.storage import Storage, default_storage
from django.utils.module_loading import import_string

from mediacache.core.headers import build_cached
from mediacache.core.objects import CachedMedia, MediaObject
from mediacache.core.settings import MediaSettings
from mediacache.edge import EdgePurgeHook, edge_hook_for
from mediacache.observability.timeseries import FileSeries, RedisSeries, default_stats_file
from mediacache.store import ObjectStore, store_for
from mediacache.tiers.lookup import MediaService, Resolver
from mediacache.tiers.lru import BytesLRU
from mediacache.tiers.redis import RedisTier, RedisWriter
from mediacache.tiers.results import cache_ttl
from mediacache.tiers.topology import RedisTopology, used_memory

logger = logging.getLogger("mediacache.engine")


class Engine:
    def __init__(self, settings: MediaSettings, *, store: ObjectStore | None = None) -> None:
        self.settings = settings
        if store is not None:
            self.__dict__["store"] = store  # fills the cached_property
        # Without Redis the in-process tier is the only cache, so it keeps objects
        # as long as Redis would; with Redis it is a short-lived hot front.
        ttl = settings.L1_TTL if settings.has_redis else float(settings.CACHE_TTL)
        self.l1 = BytesLRU(settings.L1_BYTES, ttl, max_item_bytes=settings.CACHE_MAX_OBJECT_BYTES)
        self.executor = ThreadPoolExecutor(
            max_workers=settings.STORE_THREADS, thread_name_prefix="mediacache"
        )
        self._stores: dict[int, tuple[Storage, ObjectStore]] = {}
        self._stores_lock = threading.Lock()

    @classmethod
    def from_django(cls, *, store: ObjectStore | None = None, **overrides: object) -> Engine:
        return cls(MediaSettings.from_django(**overrides), store=store)

    @cached_property
    def store(self) -> ObjectStore:
        """The default storage's adapter."""
        return store_for(default_storage, key_prefix=self.settings.KEY_PREFIX)

    def store_of(self, obj: MediaObject) -> ObjectStore:
        """The adapter of the storage that holds ``obj`` (a field's own ``storage=``)."""
        storage = obj.storage
        if storage is None or storage is default_storage:
            return self.store
        with self._stores_lock:
            known = self._stores.get(id(storage))
            if known is None:  # the storage is kept too, so its id is never reused
                known = (storage, store_for(storage, key_prefix=self.settings.KEY_PREFIX))
                self._stores[id(storage)] = known
        return known[1]

    @cached_property
    def resolver(self) -> Resolver:
        resolver: Resolver = import_string(self.settings.RESOLVER)
        return resolver

    @cached_property
    def redis_topology(self) -> RedisTopology | None:
        """Standalone, Sentinel or Cluster, from the settings; None without Redis."""
        return RedisTopology.from_settings(self.settings)

    @cached_property
    def writer(self) -> RedisWriter | None:
        if self.redis_topology is None:
            return None
        return RedisWriter(
            self.redis_topology,
            timeout=self.settings.REDIS_TIMEOUT,
            # Outlasts any fill that raced the delete (fills never overwrite it).
            tombstone_ttl=max(
                self.settings.NEGATIVE_TTL, int(self.settings.SINGLE_FLIGHT_WAIT) * 2
            ),
        )

    @cached_property
    def series(self) -> RedisSeries | FileSeries:
        """Per-minute stats shared by all processes (without Redis: those on this machine)."""
        if self.writer is None:
            from django.conf import settings as django_settings

            return FileSeries(default_stats_file(django_settings.DATABASES.get("default", {})))
        return RedisSeries(self.writer.client)

    @cached_property
    def edge(self) -> EdgePurgeHook | None:
        """The purge of the shared cache in front (``EDGE_PURGE``), or None. Bad
        ``EDGE_*`` settings turn it off with an error here (and in the system check),
        never a failed delete."""
        try:
            return edge_hook_for(self.settings)
        except ValueError as exc:
            logger.error("[MEDIA EDGE] purges off: %s", exc)
            return None

    def redis_used_memory(self) -> int | None:
        if self.writer is None:
            return None
        try:
            return used_memory(self.writer.client)
        except Exception:
            return None

    def build_service(self) -> MediaService:
        """A service for one event loop (async Redis clients are bound to their loop)."""
        redis = None
        if self.redis_topology is not None:
            redis = RedisTier(
                self.redis_topology,
                timeout=self.settings.REDIS_TIMEOUT,
                retry_after=self.settings.REDIS_RETRY_AFTER,
                heartbeat=self.settings.INVALIDATION_HEARTBEAT,
                gap_flush_every=self.settings.INVALIDATION_GAP_FLUSH_EVERY,
            )
        return MediaService(
            self.settings,
            resolver=self.resolver,
            store_of=self.store_of,
            l1=self.l1,
            redis=redis,
            executor=self.executor,
        )

    def warm(self, obj: MediaObject, source: bytes | BinaryIO | None = None) -> bool:
        """Put an object in the caches now, so the first download is a hit: Redis for
        every process, and this process's L1. ``source``: the bytes or file at hand (an
        upload); without it they are read from the store. False when the object is too
        large to cache or already expired: then nothing is read."""
        ttl = cache_ttl(self.settings, obj)
        if obj.size > self.settings.CACHE_MAX_OBJECT_BYTES or ttl <= 0:
            return False
        if source is None:
            body = self.store_of(obj).read(obj.key)
        elif isinstance(source, bytes):
            body = source
        else:
            source.seek(0)
            body = source.read()
        entry = build_cached(obj, body)
        if self.writer is not None:
            self.writer.put(entry, ttl)
        self.l1.put(obj.media_hash, entry, ttl)
        return True

    def cached_in(self, media_hashes: Sequence[str]) -> dict[str, str | None]:
        """Where each link is cached now: ``"redis"`` (every process finds it there),
        ``"l1"`` (only this process holds it: no Redis configured), ``""`` (not cached),
        or None (Redis could not be asked)."""
        if self.writer is None:
            return {
                h: "l1" if isinstance(self.l1.get(h), CachedMedia) else "" for h in media_hashes
            }
        found = self.writer.exist(media_hashes)
        if found is None:
            return dict.fromkeys(media_hashes)
        return {h: "redis" if hit else "" for h, hit in zip(media_hashes, found, strict=True)}

    def purge(self, media_hash: str) -> bool:
        """Forget an object in every tier, in every process. False if Redis failed.

        This process's L1 at once; Redis, and through its invalidation channel
        every other process's L1, when Redis is configured; the shared cache in front
        (``EDGE_PURGE``) from a thread of its own, so the caller never waits for it --
        handed over after Redis holds the tombstone, so an edge refilling at once finds
        the object gone.
        """
        self.l1.invalidate(media_hash)
        forgotten = True if self.writer is None else self.writer.delete(media_hash)
        if self.edge is not None:
            self.edge.submit(media_hash)
        return forgotten

    def refresh(self, media_hash: str) -> bool:
        """Drop the cached copy of a link whose bytes changed (a variant was built), so the
        next request reads the store; unlike :meth:`purge` no 404 is remembered.
        False if Redis failed (its copy then lives out its TTL). The edge is purged too:
        it would serve the old bytes under the same link until its s-maxage."""
        self.l1.invalidate(media_hash)
        forgotten = True if self.writer is None else self.writer.forget(media_hash)
        if self.edge is not None:
            self.edge.submit(media_hash)
        return forgotten


_engine: Engine | None = None
_engine_lock = threading.Lock()


def get_engine() -> Engine:
    global _engine
    if _engine is None:
        with _engine_lock:
            if _engine is None:
                _engine = Engine.from_django()
    return _engine


def reset_engine() -> None:
    """Drop the process's engine (tests that change settings)."""
    global _engine
    with _engine_lock:
        _engine = None
