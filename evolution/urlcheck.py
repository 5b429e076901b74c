"""Would Evolution accept this URL? Its check is validator.js ``isURL`` with defaults.

Used by a system check on PUBLIC_BASE_URL: a short link Evolution rejects fails
every send, so the service refuses to start with one (see EVOLUTION.md, trap 1).
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

_LABEL = re.compile(r"(?!-)[a-z0-9\u00a1-\uffff-]{1,63}(?<!-)", re.IGNORECASE)
_TLD = re.compile(r"([a-z\u00a1-\uffff]{2,}|xn--[a-z0-9-]{2,})", re.IGNORECASE)
MAX_LENGTH = 2083


def rejection_reason(url: str) -> str | None:
    """Why Evolution would reject ``url``, or None when it would accept it."""
    if not url or len(url) >= MAX_LENGTH:
        return "empty or too long"
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        return "it needs an http:// or https:// scheme"
    host = parts.hostname or ""
    if not host:
        return "it has no host"
    try:
        ipaddress.ip_address(host)
        return None
    except ValueError:
        pass
    if "_" in host:
        return f"the host {host!r} has an underscore"
    labels = host.rstrip(".").split(".")
    if len(labels) < 2:
        return f"the host {host!r} has no top-level domain (use a real domain or an IP)"
    if not _TLD.fullmatch(labels[-1]):
        return f"the host {host!r} does not end in a valid top-level domain"
    if not all(_LABEL.fullmatch(label) for label in labels):
        return f"the host {host!r} is not a valid domain name"
    return None
