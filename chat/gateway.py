"""The Evolution API client, built from settings."""

from __future__ import annotations

from django.conf import settings

from evolution import EvolutionClient


class GatewayNotConfigured(Exception):
    """EVOLUTION_API_URL (and its key and instance) are not set."""


def ensure_configured() -> dict:
    config = settings.EVOLUTION
    if not (config["API_URL"] and config["API_KEY"] and config["INSTANCE"]):
        raise GatewayNotConfigured(
            "Evolution API is not configured: set EVOLUTION_API_URL, EVOLUTION_API_KEY "
            "and EVOLUTION_INSTANCE"
        )
    return config


def evolution_client() -> EvolutionClient:
    config = ensure_configured()
    return EvolutionClient(
        config["API_URL"],
        config["API_KEY"],
        config["INSTANCE"],
        api_version=config["API_VERSION"],
        connect_timeout=config["CONNECT_TIMEOUT"],
        read_timeout=config["READ_TIMEOUT"],
        max_retries=config["MAX_RETRIES"],
    )
