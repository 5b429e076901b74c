"""The shared-cache headers and the purge hook, each CDN's request checked against a
recording double on loopback (tests/edge_double.py)."""

from __future__ import annotations

import logging
import threading
from xml.etree import ElementTree

import pytest

from mediacache.core.headers import CacheControl, edge_headers, edge_tag, is_immutable
from mediacache.core.objects import MediaObject
from mediacache.core.settings import MediaSettings
from mediacache.edge import (
    CloudflarePurger,
    CloudFrontPurger,
    EdgePurgeHook,
    FastlyPurger,
    NginxPurger,
    PurgeFailed,
    VarnishPurger,
    config_problems,
    purger_for,
)
from mediacache.edge.hook import EDGE_PURGES
from mediacache.engine import Engine
from tests.edge_double import EdgeDouble

H = "1BLJqu0edqfv1F7Qk8Mw3w"
BASE = "https://media.example.com"


def link_of(key: str) -> str:
    return f"{BASE}/media/{key}"


@pytest.fixture
def double():
    with EdgeDouble() as running:
        yield running


def counted(result: str) -> float:
    return EDGE_PURGES.labels(result)._value.get()


# -- headers ------------------------------------------------------------------------------


def test_each_object_has_its_own_tag_and_an_original_never_shares_it():
    assert edge_tag(H) == f"media-{H}"
    assert edge_tag(f"{H}/original") == f"media-{H}.original"
    obj = MediaObject(H, "chat/a.ogg", "audio/ogg", 3, "abc")
    assert edge_headers(obj) == [
        (b"surrogate-key", f"media-{H}".encode()),
        (b"cache-tag", f"media-{H}".encode()),
    ]


def test_only_the_original_is_immutable_a_link_may_get_a_variant_later():
    assert is_immutable(f"{H}/original")
    assert not is_immutable(H)


def test_cache_control_gives_shared_caches_their_own_lifetime_never_past_expiry():
    control = CacheControl(max_age=604800, edge_max_age=3600)
    assert control.value(float("inf"), False) == b"public, max-age=604800, s-maxage=3600"
    assert control.value(10**9, True) == b"public, max-age=604800, s-maxage=3600, immutable"
    assert control.value(7200.9, False) == b"public, max-age=7200, s-maxage=3600"
    assert control.value(60.5, False) == b"public, max-age=60, s-maxage=60"
    assert control.value(-5, False) == b"public, max-age=0, s-maxage=0"


# -- each CDN's request -------------------------------------------------------------------


def test_cloudflare_purges_by_tag(double):
    purger = CloudflarePurger(
        zone_id="z1", token="cf-secret", link_of=link_of, api_url=double.url, timeout=2
    )
    assert purger.purge([H, f"{H}/original", H]) == "tags=2"
    (sent,) = double.wait_for(1)
    assert (sent.method, sent.path) == ("POST", "/zones/z1/purge_cache")
    assert sent.headers["authorization"] == "Bearer cf-secret"
    assert sent.json() == {"tags": [f"media-{H}", f"media-{H}.original"]}


def test_cloudflare_purges_by_url(double):
    purger = CloudflarePurger(
        zone_id="z1", token="t", by="urls", link_of=link_of, api_url=double.url, timeout=2
    )
    purger.purge([H, f"{H}/original"])
    assert double.wait_for(1)[0].json() == {
        "files": [f"{BASE}/media/{H}", f"{BASE}/media/{H}/original"]
    }


def test_fastly_purges_surrogate_keys_in_one_batch(double):
    FastlyPurger(service_id="svc", token="fastly-secret", api_url=double.url, timeout=2).purge(
        [H, f"{H}/original"]
    )
    (sent,) = double.wait_for(1)
    assert (sent.method, sent.path) == ("POST", "/service/svc/purge")
    assert sent.headers["fastly-key"] == "fastly-secret"
    assert sent.headers["surrogate-key"] == f"media-{H} media-{H}.original"


def test_cloudfront_creates_one_invalidation_with_boto3(double, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    purger = CloudFrontPurger(
        distribution_id="E2DIST", link_of=link_of, endpoint_url=double.url, timeout=2
    )
    assert purger.purge([H, f"{H}/original"]).startswith("paths=2 invalidation=I")
    (sent,) = double.wait_for(1)
    assert (sent.method, sent.path) == ("POST", "/2020-05-31/distribution/E2DIST/invalidation")
    assert sent.headers["authorization"].startswith("AWS4-HMAC-SHA256 Credential=test/")
    ns = {"cf": "http://cloudfront.amazonaws.com/doc/2020-05-31/"}
    batch = ElementTree.fromstring(sent.body)
    paths = [p.text for p in batch.findall("cf:Paths/cf:Items/cf:Path", ns)]
    assert paths == [f"/media/{H}", f"/media/{H}/original"]
    assert batch.find("cf:Paths/cf:Quantity", ns).text == "2"


def test_varnish_gets_a_purge_on_every_node():
    with EdgeDouble() as one, EdgeDouble() as two:
        VarnishPurger(nodes=[one.url + "/", two.url + "/"], timeout=2).purge([H])
        for node in (one, two):
            (sent,) = node.wait_for(1)
            assert (sent.method, sent.path) == ("PURGE", "/")
            assert sent.headers["xkey-purge"] == f"media-{H}"


def test_nginx_gets_one_purge_per_key_on_every_node():
    with EdgeDouble() as one, EdgeDouble() as two:
        summary = NginxPurger(nodes=[one.url + "/", two.url], timeout=2).purge(
            [H, f"{H}/original", H]
        )
        assert summary == "paths=2 nodes=2"
        for node in (one, two):
            sent = node.wait_for(2)
            assert [(r.method, r.path) for r in sent] == [
                ("GET", f"/.edge-purge/media/{H}"),
                ("GET", f"/.edge-purge/media/{H}/original"),
            ]


def test_nginx_purge_fails_unless_every_node_confirms(double):
    with EdgeDouble() as good:
        double.fail_next = 1
        with pytest.raises(PurgeFailed, match=r"HTTP 500, not confirmed"):
            NginxPurger(nodes=[double.url, good.url], timeout=2).purge([H])
        assert len(good.wait_for(1)) == 1  # the other node was still asked


def test_nginx_purge_is_not_confirmed_by_an_edge_without_the_config():
    # An nginx without deploy/edge/nginx-edge.conf answers a plain 404: nothing purged.
    with (
        EdgeDouble(confirm_purges=False) as plain,
        pytest.raises(PurgeFailed, match="HTTP 404, not confirmed"),
    ):
        NginxPurger(nodes=[plain.url], timeout=2).purge([H])


def test_nginx_purge_names_an_edge_that_does_not_answer():
    from tests.servers import free_port

    with pytest.raises(PurgeFailed, match="ConnectError"):
        NginxPurger(nodes=[f"http://127.0.0.1:{free_port()}"], timeout=2).purge([H])


# -- the hook: off the request path, batched, bounded, failures survived ---------------------


def varnish_hook(double: EdgeDouble, **kwargs) -> EdgePurgeHook:
    timeout = kwargs.pop("timeout", 2)
    return EdgePurgeHook(VarnishPurger(nodes=[double.url], timeout=timeout), backoff=0.01, **kwargs)


def test_a_deletes_two_keys_go_out_in_one_request(double):
    hook = varnish_hook(double)
    before = counted("purged")
    hook.submit(H)
    hook.submit(f"{H}/original")
    assert hook.flush(10)
    assert [r.headers["xkey-purge"] for r in double.requests] == [f"media-{H} media-{H}.original"]
    assert counted("purged") - before == 2


def test_a_failed_call_is_tried_again(double, caplog):
    double.fail_next = 2
    hook = varnish_hook(double, attempts=3)
    hook.submit(H)
    assert hook.flush(10)
    assert len(double.requests) == 3
    assert "purged 1 objects (varnish" in caplog.text


def test_failures_are_logged_and_counted_and_later_purges_still_go_out(double, caplog):
    double.fail_next = 2
    hook = varnish_hook(double, attempts=2)
    before = counted("failed")
    with caplog.at_level(logging.WARNING, "mediacache.edge"):
        hook.submit(H)
        assert hook.flush(10)
    assert counted("failed") - before == 1
    assert "[MEDIA EDGE] purge failed (varnish) for 1 objects after 2 attempts" in caplog.text
    assert ": HTTP 500: edge error; they stay at the edge until their s-maxage" in caplog.text
    hook.submit("another0hash0abcdefgh")
    assert hook.flush(10)
    assert double.requests[-1].headers["xkey-purge"] == "media-another0hash0abcdefgh"


def test_submit_never_waits_for_the_edge(double):
    double.hold = True  # the edge takes the request and does not answer
    hook = varnish_hook(double, timeout=30)
    hook.submit(H)  # returns while the edge still holds the request
    double.wait_for(1)
    assert not hook.flush(0)
    double.release()
    assert hook.flush(10)


def test_an_edge_that_hangs_costs_the_timeout_then_counts_as_failed(double):
    double.hold = True
    hook = varnish_hook(double, timeout=0.2, attempts=1)
    before = counted("failed")
    hook.submit(H)
    assert hook.flush(10)
    assert counted("failed") - before == 1


def test_a_full_queue_drops_and_counts_instead_of_growing(double):
    double.hold = True
    hook = varnish_hook(double, max_pending=1, timeout=30)
    hook.submit(H)
    double.wait_for(1)  # the first is in flight; the queue is empty again
    before = counted("dropped")
    hook.submit("a" * 22)
    hook.submit("b" * 22)
    assert counted("dropped") - before == 1
    double.release()


# -- wiring: settings, the engine, the system check ---------------------------------------


def test_the_engine_purges_the_edge_on_purge_and_refresh(double):
    engine = Engine(MediaSettings(EDGE_PURGE="varnish", EDGE_PURGE_URLS=(double.url,)))
    engine.purge(H)
    assert engine.edge is not None
    assert engine.edge.flush(10)
    engine.refresh("c" * 22)
    assert engine.edge.flush(10)
    assert [r.headers["xkey-purge"] for r in double.requests] == [f"media-{H}", f"media-{'c' * 22}"]


def test_bad_edge_settings_turn_the_purge_off_never_the_delete(caplog):
    engine = Engine(MediaSettings(EDGE_PURGE="akamai"))
    assert engine.edge is None
    engine.purge(H)  # still forgets the object in this process
    assert "[MEDIA EDGE] purges off: EDGE_PURGE='akamai' is not one of" in caplog.text


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        ({"EDGE_PURGE": "cloudflare", "EDGE_API_TOKEN": "t"}, "needs EDGE_ZONE_ID (the zone id)"),
        ({"EDGE_PURGE": "fastly", "EDGE_ZONE_ID": "s"}, "needs EDGE_API_TOKEN"),
        ({"EDGE_PURGE": "cloudfront"}, "needs EDGE_ZONE_ID (the distribution id)"),
        ({"EDGE_PURGE": "varnish"}, "needs EDGE_PURGE_URLS"),
        ({"EDGE_PURGE": "nginx"}, "EDGE_PURGE=nginx needs EDGE_PURGE_URLS"),
    ],
)
def test_missing_settings_are_named(settings, problem):
    assert any(problem in p for p in config_problems(MediaSettings(**settings)))


def test_nginx_style_purges_every_node_listed():
    settings = MediaSettings(EDGE_PURGE="nginx", EDGE_PURGE_URLS=("http://a:6081/", "http://b"))
    purger = purger_for(settings, link_of=link_of)
    assert isinstance(purger, NginxPurger)
    assert purger.nodes == ["http://a:6081", "http://b"]


def test_no_purge_unless_asked_for():
    assert purger_for(MediaSettings(), link_of=link_of) is None
    assert config_problems(MediaSettings()) == []


def test_the_system_check_reports_a_broken_edge_config(settings):
    from mediacache.checks import check_edge

    settings.MEDIACACHE = {**getattr(settings, "MEDIACACHE", {}), "EDGE_PURGE": "varnish"}
    (error,) = check_edge()
    assert error.id == "mediacache.E006"
    assert "EDGE_PURGE_URLS" in error.msg


def test_the_hook_thread_is_one_per_process(double):
    hook = varnish_hook(double)
    hook.submit(H)
    hook.submit(H)
    assert hook.flush(10)
    names = [t.name for t in threading.enumerate()]
    assert names.count("mediacache-edge-purge") >= 1
