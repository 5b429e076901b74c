"""Evolution API (WhatsApp gateway) client. Framework-free: no Django imports here."""

from evolution.client import EvolutionClient, SendResult
from evolution.errors import (
    EvolutionAuthError,
    EvolutionDownloadError,
    EvolutionError,
    EvolutionUnavailable,
    EvolutionValidationError,
)

__all__ = [
    "EvolutionAuthError",
    "EvolutionClient",
    "EvolutionDownloadError",
    "EvolutionError",
    "EvolutionUnavailable",
    "EvolutionValidationError",
    "SendResult",
]
