"""Purging a shared cache in front (a CDN, Varnish, nginx) when an object is deleted or changes.

The serving path tags every answer with the object's tag (``Surrogate-Key`` and
``Cache-Tag``, :func:`mediacache.core.headers.edge_tag`) and tells shared caches how
long they may keep it (``s-maxage``, ``EDGE_MAX_AGE``). On a delete or a refresh the
engine hands the object's key to :class:`EdgePurgeHook`, which sends the purge in a
thread of its own -- a delete never waits for a CDN's API -- batched, with a bounded
timeout and a few attempts, logged and counted (:mod:`mediacache.edge.hook`). The
request each CDN understands is in :mod:`mediacache.edge.purgers`.
"""

from __future__ import annotations

from mediacache.edge.hook import EdgePurgeHook, edge_hook_for
from mediacache.edge.purgers import (
    STYLES,
    CloudflarePurger,
    CloudFrontPurger,
    EdgePurger,
    FastlyPurger,
    NginxPurger,
    PurgeFailed,
    VarnishPurger,
    config_problems,
    purger_for,
)

__all__ = [
    "STYLES",
    "CloudFrontPurger",
    "CloudflarePurger",
    "EdgePurgeHook",
    "EdgePurger",
    "FastlyPurger",
    "NginxPurger",
    "PurgeFailed",
    "VarnishPurger",
    "config_problems",
    "edge_hook_for",
    "purger_for",
]
