"""Evolution API (WhatsApp gateway) client. Framework-free: no Django imports here."""

from evolution.client import ConnectionState, EvolutionClient, SendResult
from evolution.errors import (
    EvolutionAuthError,
    EvolutionDownloadError,
    EvolutionError,
    EvolutionInstanceNotConnected,
    EvolutionInstanceNotFound,
    EvolutionServerError,
    EvolutionUnavailable,
    EvolutionValidationError,
)

__all__ = [
    "ConnectionState",
    "EvolutionAuthError",
    "EvolutionClient",
    "EvolutionDownloadError",
    "EvolutionError",
    "EvolutionInstanceNotConnected",
    "EvolutionInstanceNotFound",
    "EvolutionServerError",
    "EvolutionUnavailable",
    "EvolutionValidationError",
    "SendResult",
]
