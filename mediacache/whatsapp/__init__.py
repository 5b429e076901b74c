"""The WhatsApp wing of the engine (optional): send by short link through Evolution API,
WhatsApp's limits checked first, and the gateway's start-up checks.

The core engine never imports this package; a host that does not send through
Evolution never loads it.
"""

from mediacache.whatsapp.limits import (
    NotSendable,
    check_sendable,
    delivered_type,
    file_name_for,
    is_voice_variant,
    mediatype_for,
    send_warnings,
)
from mediacache.whatsapp.send import send_via_evolution, warm

__all__ = [
    "NotSendable",
    "check_sendable",
    "delivered_type",
    "file_name_for",
    "is_voice_variant",
    "mediatype_for",
    "send_via_evolution",
    "send_warnings",
    "warm",
]
