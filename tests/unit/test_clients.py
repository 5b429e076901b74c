"""The client behind trusted proxies (mediacache.serving.clients) and who may read /metrics
(mediacache.observability.scrape): pure logic over ASGI scopes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mediacache.observability.scrape import metrics_allowed
from mediacache.serving.clients import TrustedProxies, parse_networks

PROXY = "10.1.2.3"
LOOPBACK_ONLY = TrustedProxies()
PRIVATE = TrustedProxies(["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"])


def scope(peer: str | None, *forwarded: str, **headers: str) -> dict:
    raw = [(b"x-forwarded-for", value.encode()) for value in forwarded]
    raw += [(name.replace("_", "-").encode(), value.encode()) for name, value in headers.items()]
    return {"type": "http", "client": (peer, 5000) if peer else None, "headers": raw}


def test_an_untrusted_peer_is_the_client_whatever_it_forwards():
    assert LOOPBACK_ONLY.client_of(scope("203.0.113.7", "127.0.0.1")) == "203.0.113.7"
    assert PRIVATE.client_of(scope("203.0.113.7", "10.0.0.1, 127.0.0.1")) == "203.0.113.7"


def test_behind_a_trusted_proxy_the_rightmost_untrusted_hop_is_the_client():
    # The client forged "127.0.0.1, 10.9.9.9"; the proxy appended its real address.
    forged = scope(PROXY, "127.0.0.1, 10.9.9.9, 198.51.100.4")
    assert PRIVATE.client_of(forged) == "198.51.100.4"
    # Two proxies (an ingress behind a cloud load balancer), both trusted.
    assert PRIVATE.client_of(scope(PROXY, "198.51.100.4, 10.0.0.7")) == "198.51.100.4"
    # Repeated headers are one list, in order.
    assert PRIVATE.client_of(scope(PROXY, "1.1.1.1", "198.51.100.4")) == "198.51.100.4"


def test_a_forged_loopback_never_makes_a_client_loopback():
    proxied = scope("127.0.0.1", "127.0.0.1, 203.0.113.7")
    assert LOOPBACK_ONLY.client_of(proxied) == "203.0.113.7"
    assert LOOPBACK_ONLY.client_of(scope("127.0.0.1", "::1, 203.0.113.7")) == "203.0.113.7"


def test_no_header_or_only_trusted_hops():
    assert LOOPBACK_ONLY.client_of(scope("127.0.0.1")) == "127.0.0.1"
    assert PRIVATE.client_of(scope(PROXY, "10.0.0.5, 10.0.0.6")) == "10.0.0.5"
    assert PRIVATE.client_of(scope(PROXY, " , ")) == PROXY
    assert LOOPBACK_ONLY.client_of(scope(None)) == "-"


def test_ports_brackets_and_mapped_addresses():
    assert LOOPBACK_ONLY.client_of(scope("::1", "198.51.100.4:5123")) == "198.51.100.4"
    assert LOOPBACK_ONLY.client_of(scope("::1", "[2001:db8::1]:443")) == "2001:db8::1"
    assert LOOPBACK_ONLY.client_of(scope("::ffff:127.0.0.1", "2001:db8::9")) == "2001:db8::9"
    assert PRIVATE.client_of(scope(PROXY, "junk")) == "junk"  # never trusted, never loopback


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match="'\\*' would trust"):
        parse_networks(["*"])
    with pytest.raises(ValueError, match=r"'10\.0\.0\.0/33'"):
        parse_networks(["10.0.0.0/33"])
    assert [str(n) for n in parse_networks(["10.1.2.3", " ", "fc00::/7"])] == [
        "10.1.2.3/32",
        "fc00::/7",
    ]


addresses = st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)).map(str)


@given(forged=st.lists(addresses, max_size=5), client=addresses)
def test_whatever_the_client_forges_the_answer_is_what_the_proxy_saw(forged, client):
    trusted = LOOPBACK_ONLY
    header = ", ".join([*forged, client])
    derived = trusted.client_of(scope("127.0.0.1", header))
    if not trusted.trusts(client):
        assert derived == client


def test_metrics_without_a_token_only_for_a_direct_loopback_peer():
    assert metrics_allowed(scope("127.0.0.1"), "")
    assert metrics_allowed(scope("::1"), "")
    assert not metrics_allowed(scope("127.0.0.1", "127.0.0.1"), "")  # came through a proxy
    assert not metrics_allowed(scope("127.0.0.1", forwarded="for=127.0.0.1"), "")
    assert not metrics_allowed(scope("127.0.0.1", x_real_ip="127.0.0.1"), "")
    assert not metrics_allowed(scope("203.0.113.7"), "")
    assert not metrics_allowed(scope(None), "")
    assert not metrics_allowed(scope("localhost"), "")  # a name, not an address


def test_metrics_with_a_token_only_for_that_token():
    assert metrics_allowed(scope("203.0.113.7", authorization="Bearer s3cret"), "s3cret")
    assert not metrics_allowed(scope("127.0.0.1"), "s3cret")
    assert not metrics_allowed(scope("127.0.0.1", authorization="Bearer other"), "s3cret")
