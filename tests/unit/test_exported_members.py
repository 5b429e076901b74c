"""The public API is what ``mediacache.__all__`` declares (as httpx pins its own)."""

from __future__ import annotations

import mediacache

PUBLIC = {
    "__version__",
    "Engine",
    "MediaObject",
    "MediaSettings",
    "ObjectMissing",
    "ObjectStore",
    "ShortLinkMixin",
    "StoreUnavailable",
    "get_engine",
    "is_media_hash",
    "media_model",
    "new_media_hash",
    "resolve_media",
    "short_url_for",
    "store_for",
    "with_media",
}


def test_all_is_the_declared_public_api():
    assert set(mediacache.__all__) == PUBLIC


def test_every_exported_name_resolves_and_says_where_it_lives():
    for name in mediacache.__all__:
        value = getattr(mediacache, name)
        if name != "__version__":
            assert value.__module__.startswith("mediacache."), name


def test_the_import_paths_deploy_files_and_host_projects_use_still_work():
    from mediacache.asgi import with_media
    from mediacache.fastpath import MediaHttpProtocol
    from mediacache.models import ShortLinkMixin
    from mediacache.whatsapp import NotSendable, send_via_evolution

    assert with_media is mediacache.with_media
    assert ShortLinkMixin is mediacache.ShortLinkMixin
    assert MediaHttpProtocol.__name__ == "MediaHttpProtocol"
    assert callable(send_via_evolution)
    assert issubclass(NotSendable, ValueError)
