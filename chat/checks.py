"""System checks: configuration that would make every send fail is refused up front."""

from __future__ import annotations

from django.conf import settings
from django.core import checks

from evolution.urlcheck import rejection_reason


@checks.register("mediacache")
def check_public_base_url(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    reason = rejection_reason(settings.PUBLIC_BASE_URL)
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
    if settings.EVOLUTION["API_URL"]:
        return [checks.Error(message, hint=hint, id="chat.E001")]
    return [checks.Warning(message, hint=hint, id="chat.W001")]


@checks.register("mediacache")
def check_evolution(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    evolution = settings.EVOLUTION
    if not evolution["API_URL"]:
        return []
    missing = [name for name in ("API_KEY", "INSTANCE") if not evolution[name]]
    errors = [
        checks.Error(f"EVOLUTION_{name} must be set when EVOLUTION_API_URL is", id="chat.E002")
        for name in missing
    ]
    if evolution["API_VERSION"] not in (1, 2):
        errors.append(checks.Error("EVOLUTION_API_VERSION must be 1 or 2", id="chat.E003"))
    return errors
