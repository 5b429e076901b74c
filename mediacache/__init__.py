"""Mediacache engine: short links to objects in a store, served from cache tiers.

The engine knows nothing of chat: a host app registers its attachment model (or a
resolver) that turns a media hash into a :class:`MediaObject`. The names below are
the public API (``tests/unit/test_exported_members.py`` pins them); everything
else is internal and may move. They load on first use, because Django imports this
package before its app registry is ready.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    # links and what they point to
    "MediaObject": "mediacache.core.objects",
    "MediaSettings": "mediacache.core.settings",
    "new_media_hash": "mediacache.core.hashes",
    "is_media_hash": "mediacache.core.hashes",
    "short_url_for": "mediacache.core.links",
    # the host app's model
    "ShortLinkMixin": "mediacache.models",
    "media_model": "mediacache.registry",
    "resolve_media": "mediacache.registry",
    # the object store
    "ObjectStore": "mediacache.store",
    "ObjectMissing": "mediacache.store",
    "StoreUnavailable": "mediacache.store",
    "store_for": "mediacache.store",
    # the engine and its ASGI app
    "Engine": "mediacache.engine",
    "get_engine": "mediacache.engine",
    "with_media": "mediacache.serving.router",
}

__all__ = [
    "Engine",
    "MediaObject",
    "MediaSettings",
    "ObjectMissing",
    "ObjectStore",
    "ShortLinkMixin",
    "StoreUnavailable",
    "__version__",
    "get_engine",
    "is_media_hash",
    "media_model",
    "new_media_hash",
    "resolve_media",
    "short_url_for",
    "store_for",
    "with_media",
]

if TYPE_CHECKING:
    from mediacache.core.hashes import is_media_hash, new_media_hash
    from mediacache.core.links import short_url_for
    from mediacache.core.objects import MediaObject
    from mediacache.core.settings import MediaSettings
    from mediacache.engine import Engine, get_engine
    from mediacache.models import ShortLinkMixin
    from mediacache.registry import media_model, resolve_media
    from mediacache.serving.router import with_media
    from mediacache.store import ObjectMissing, ObjectStore, StoreUnavailable, store_for


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'mediacache' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
