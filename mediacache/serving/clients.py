"""Who the client is, behind proxies we trust: the 404 limiter's key and its log lines.

``TRUSTED_PROXIES`` (CIDRs, default loopback only) names the proxies whose
``X-Forwarded-For`` we believe. Each proxy appends the address it was connected from,
so the header is walked from the right, and the first address that is not a trusted
proxy is the client: everything left of it was written by the client itself and may be
forged. A direct peer we do not trust is the client, whatever it sends.

This is the rule uvicorn 0.30+ applies to ``scope["client"]`` with
``--forwarded-allow-ips`` (``scripts/serve.sh`` passes it the same set, so Django's
``REMOTE_ADDR`` agrees); the engine applies it itself so it holds under any server,
and running it on an address uvicorn already rewrote gives the same answer. Computed
only where a client is needed (a miss or a 404), never on the L1-hit path.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from functools import lru_cache

from mediacache.core.asgi_types import Scope

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

LOOPBACK_PROXIES = ("127.0.0.1/32", "::1/128")
_UNKNOWN = "-"


def parse_networks(cidrs: Iterable[str]) -> tuple[Network, ...]:
    """The CIDRs (a bare address is a /32 or /128); a bad one is a ValueError naming it."""
    networks = []
    for cidr in cidrs:
        text = cidr.strip()
        if not text:
            continue
        if text == "*":
            raise ValueError(
                "TRUSTED_PROXIES: '*' would trust every X-Forwarded-For a client forges; "
                "name the proxies' networks (CIDRs)"
            )
        try:
            networks.append(ipaddress.ip_network(text, strict=False))
        except ValueError as exc:
            raise ValueError(f"TRUSTED_PROXIES: {text!r} is not an address or CIDR") from exc
    return tuple(networks)


def _host_of(entry: str) -> str:
    """One ``X-Forwarded-For`` entry without a port (``1.2.3.4:5``, ``[::1]:5``)."""
    entry = entry.strip()
    if entry.startswith("["):
        end = entry.find("]")
        return entry[1:end] if end > 0 else entry
    if entry.count(":") == 1:
        return entry.split(":", 1)[0]
    return entry


class TrustedProxies:
    def __init__(self, cidrs: Iterable[str] = LOOPBACK_PROXIES) -> None:
        self.networks = parse_networks(cidrs)
        # Addresses repeat (the proxy's own, a busy client's): remember the verdicts.
        self.trusts = lru_cache(maxsize=4096)(self._trusts)

    def _trusts(self, host: str) -> bool:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False  # not an address (a unix socket, junk): never a trusted proxy
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self.networks)

    def client_of(self, scope: Scope) -> str:
        """The client's address as the rightmost untrusted hop; ``-`` when unknown."""
        peer = scope.get("client")
        host = peer[0] if peer else None
        if not host:
            return _UNKNOWN
        if not self.trusts(host):
            return str(host)
        forwarded = [value for name, value in scope["headers"] if name == b"x-forwarded-for"]
        if not forwarded:
            return str(host)
        entries = [e for e in b",".join(forwarded).decode("latin-1").split(",") if e.strip()]
        for entry in reversed(entries):
            candidate = _host_of(entry)
            if not self.trusts(candidate):
                return candidate
        # Every hop is a trusted proxy: the first of them asked on its own behalf.
        return _host_of(entries[0]) if entries else str(host)
