"""System checks of the gateway settings: a configuration that would make every send
fail is refused up front. ``register()`` also adds the instance's connection state to
``/readyz``'s details (shown, never counted).

Registered by the engine's app only for projects that have an ``EVOLUTION`` setting;
tagged ``mediacache``, so ``with_media()`` runs them when the server starts too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.core import checks

from evolution.urlcheck import rejection_reason
from mediacache.core.details import register_detail
from mediacache.whatsapp.state import readiness_detail


def check_public_base_url(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    reason = rejection_reason(getattr(settings, "PUBLIC_BASE_URL", ""))
    if reason is None:
        return []
    message = (
        f"PUBLIC_BASE_URL={settings.PUBLIC_BASE_URL!r} would be rejected by Evolution API: "
        f"{reason}."
    )
    hint = (
        "Evolution validates media URLs like validator.js isURL: the host needs a top-level "
        "domain or must be an IP address (not 'localhost' or a bare service name), with no "
        "underscores. Set PUBLIC_BASE_URL to the address Evolution reaches this service at."
    )
    if _evolution().get("API_URL"):
        return [checks.Error(message, hint=hint, id="mediacache.E001")]
    return [checks.Warning(message, hint=hint, id="mediacache.W001")]


def check_evolution(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    evolution = _evolution()
    if not evolution.get("API_URL"):
        return []
    missing = [name for name in ("API_KEY", "INSTANCE") if not evolution.get(name)]
    errors: list[checks.CheckMessage] = [
        checks.Error(
            f"EVOLUTION_{name} must be set when EVOLUTION_API_URL is", id="mediacache.E002"
        )
        for name in missing
    ]
    if evolution.get("API_VERSION", 2) not in (1, 2):
        errors.append(checks.Error("EVOLUTION_API_VERSION must be 1 or 2", id="mediacache.E003"))
    return errors


def _evolution() -> Mapping[str, Any]:
    """The gateway settings, if this project sends through Evolution (``settings.EVOLUTION``)."""
    return getattr(settings, "EVOLUTION", {})


def register() -> None:
    """The gateway's start-up checks, and its connection state as a ``/readyz`` detail."""
    checks.register(check_public_base_url, "mediacache")
    checks.register(check_evolution, "mediacache")
    register_detail("gateway", readiness_detail)
