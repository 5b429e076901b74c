"""A real edge on loopback: stock nginx with the repository's config
(deploy/edge/nginx-edge.conf) in front of the service, purged by the engine's own hook
(MEDIA_EDGE_PURGE=nginx: an expired tombstone stored in place of the object)."""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from mediacache.core.settings import MediaSettings
from mediacache.edge import NginxPurger, PurgeFailed, edge_hook_for
from mediacache.engine import get_engine
from tests.conftest import upload
from tests.edge_double import EdgeDouble, engine_purging
from tests.nginx_edge import INSTALL_HINT, nginx, nginx_edge_argv
from tests.servers import free_port

# How long the poll waits for a deleted object's 404 at the edge: the target is 1 s
# (`make scale` measures it); generous here, on a shared, noisy machine.
GONE_WITHIN = 5.0


@contextlib.contextmanager
def running_edge(workdir: Path, backend_url: str) -> Iterator[str]:
    """nginx with the shipped config in front of ``backend_url``, up (it answers); its URL."""
    assert nginx(), f"nginx missing: {INSTALL_HINT}"
    backend = urlsplit(backend_url)
    port = free_port()
    process = subprocess.Popen(
        nginx_edge_argv(workdir, port, [(backend.hostname or "", backend.port or 80)], free_port()),
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    log = workdir / "error.log"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, log.read_text() if log.exists() else "nginx exited"
            with contextlib.suppress(httpx.TransportError):
                httpx.get(f"{url}/healthz", timeout=1)
                break
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def edge(live, tmp_path: Path) -> Iterator[str]:
    """nginx in front of the live service; the engine purges it. Its URL."""
    with running_edge(tmp_path / "edge", live.url) as url:
        settings = MediaSettings(EDGE_PURGE="nginx", EDGE_PURGE_URLS=(url + "/",))
        with engine_purging(edge_hook_for(settings)):
            yield url


def _cached(edge: str, path: str) -> None:
    first = httpx.get(f"{edge}{path}")
    assert (first.status_code, first.headers["x-edge"]) == (200, "MISS"), first.headers
    assert httpx.get(f"{edge}{path}").headers["x-edge"] == "HIT"


def test_the_edge_keeps_one_copy_per_object_whatever_the_query_or_extension(api, voice_note, edge):
    created = upload(api, voice_note, "voice.ogg")
    path = urlsplit(created["short_url"]).path
    first = httpx.get(f"{edge}{path}")
    assert (first.status_code, first.headers["x-edge"]) == (200, "MISS")
    again = httpx.get(f"{edge}{path}?timestamp=1730000000000")  # what Evolution sends
    assert (again.headers["x-edge"], again.content) == ("HIT", voice_note)
    assert again.headers["etag"] == first.headers["etag"]
    assert "s-maxage=3600" in again.headers["cache-control"]
    assert "surrogate-key" not in again.headers  # the tags are for tag-purging CDNs
    assert "cache-tag" not in again.headers
    with_ext = httpx.get(f"{edge}{path}.ogg?timestamp=2")
    assert (with_ext.headers["x-edge"], with_ext.content) == ("HIT", voice_note)


def test_head_and_ranges_come_from_the_cached_copy(api, voice_note, edge):
    created = upload(api, voice_note, "voice.ogg")
    path = urlsplit(created["short_url"]).path
    head = httpx.head(f"{edge}{path}")  # a miss: nginx fetches (and keeps) the whole GET
    assert (head.status_code, head.content) == (200, b"")
    assert head.headers["content-length"] == str(len(voice_note))
    assert head.headers["x-edge"] == "MISS"
    head = httpx.head(f"{edge}{path}?timestamp=3")
    assert (head.status_code, head.headers["x-edge"], head.content) == (200, "HIT", b"")
    assert head.headers["content-length"] == str(len(voice_note))
    assert head.headers["content-type"].startswith("audio/ogg")
    full = httpx.get(f"{edge}{path}")
    assert (full.headers["x-edge"], full.content) == ("HIT", voice_note)
    ranged = httpx.get(f"{edge}{path}", headers={"Range": "bytes=0-9"})
    assert (ranged.status_code, ranged.content) == (206, voice_note[:10])
    assert ranged.headers["content-range"] == f"bytes 0-9/{len(voice_note)}"
    assert ranged.headers["x-edge"] == "HIT"
    tail = httpx.get(f"{edge}{path}", headers={"Range": "bytes=-5"})
    assert (tail.status_code, tail.content) == (206, voice_note[-5:])
    beyond = httpx.get(f"{edge}{path}", headers={"Range": f"bytes={len(voice_note)}-"})
    assert beyond.status_code == 416
    fresh = httpx.get(f"{edge}{path}", headers={"If-None-Match": full.headers["etag"]})
    assert fresh.status_code == 304


def test_a_range_on_a_miss_is_cut_from_the_whole_answer_which_is_kept(api, voice_note, edge):
    created = upload(api, voice_note, "voice.ogg")
    path = urlsplit(created["short_url"]).path
    ranged = httpx.get(f"{edge}{path}", headers={"Range": "bytes=10-19"})
    assert (ranged.status_code, ranged.content) == (206, voice_note[10:20])
    assert ranged.headers["x-edge"] == "MISS"
    full = httpx.get(f"{edge}{path}")
    assert (full.status_code, full.headers["x-edge"], full.content) == (200, "HIT", voice_note)


def test_a_deleted_object_answers_404_at_the_edge_once_purged(api, voice_note, edge):
    created = upload(api, voice_note, "voice.ogg")
    path = urlsplit(created["short_url"]).path
    _cached(edge, path)
    # The same entry: one purge reaches both forms.
    assert httpx.get(f"{edge}{path}.ogg").headers["x-edge"] == "HIT"
    assert api.delete(f"/api/attachments/{created['id']}").status_code == 204
    answered = time.monotonic()
    statuses = []
    while time.monotonic() - answered < GONE_WITHIN:
        statuses.append(httpx.get(f"{edge}{path}?timestamp=4").status_code)
        if statuses[-1] == 404:
            break
        time.sleep(0.02)
    assert statuses[-1] == 404, statuses
    print(f"404 at the edge after {(time.monotonic() - answered) * 1000:.0f} ms, {statuses}")
    assert get_engine().edge.flush(10)
    for form in (path, f"{path}.ogg", f"{path}?timestamp=5"):
        gone = httpx.get(f"{edge}{form}")
        assert (gone.status_code, gone.headers["x-edge"]) == (404, "MISS"), form
    assert httpx.get(f"{edge}{path}").headers["x-edge"] == "MISS"  # the 404 was not kept


def test_purging_what_is_not_cached_succeeds(api, voice_note, edge):
    created = upload(api, voice_note, "voice.ogg")
    media_hash = urlsplit(created["short_url"]).path.removeprefix("/media/")
    path = f"/media/{media_hash}"
    purger = NginxPurger(nodes=[edge + "/"], timeout=5)
    purger.purge([media_hash, f"{media_hash}/original"])  # neither is cached: fine
    _cached(edge, path)  # the tombstone of a purge before the object came is no obstacle
    purger.purge([media_hash])
    assert httpx.get(f"{edge}{path}").headers["x-edge"] == "MISS"
    assert httpx.get(f"{edge}{path}").headers["x-edge"] == "HIT"


def test_a_purge_from_another_address_is_refused(api, voice_note, edge):
    created = upload(api, voice_note, "voice.ogg")
    path = urlsplit(created["short_url"]).path
    _cached(edge, path)
    # The edge's own address on another interface is not in its list of purgers.
    other = _non_loopback_address()
    assert other, "no non-loopback IPv4 address to purge from"
    with httpx.Client(transport=httpx.HTTPTransport(local_address=other)) as client:
        refused = client.get(f"{edge}/.edge-purge{path}")
    assert refused.status_code == 403
    assert httpx.get(f"{edge}{path}").headers["x-edge"] == "HIT"
    with pytest.raises(PurgeFailed, match="403"):
        NginxPurger(
            nodes=[edge], timeout=5, transport=httpx.HTTPTransport(local_address=other)
        ).purge([path.removeprefix("/media/")])


def _non_loopback_address() -> str | None:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: nothing is sent
        except OSError:
            return None
        address = probe.getsockname()[0]
    return None if address.startswith("127.") else address


def test_the_api_and_errors_are_never_kept_at_the_edge(api, edge, api_key):
    headers = {"Authorization": f"Bearer {api_key}"}
    for _ in range(2):
        response = httpx.get(f"{edge}/api/attachments/999999", headers=headers)
        assert (response.status_code, response.headers["x-edge"]) == (404, "MISS")
        unknown = httpx.get(f"{edge}/media/AAAAAAAAAAAAAAAAAAAAAA")
        assert (unknown.status_code, unknown.headers["x-edge"]) == (404, "MISS")


def test_the_shipped_config_and_its_example_replicas_pass_nginx_t(tmp_path):
    from tests.nginx_edge import CONF, edge_conf

    (tmp_path / "cache").mkdir()
    (tmp_path / "nginx-edge.conf").write_text(edge_conf(tmp_path, free_port(), free_port()))
    (tmp_path / "nginx-edge-replicas.conf").write_text(
        (CONF.parent / "nginx-edge-replicas.conf").read_text()
    )
    binary = nginx()
    assert binary, INSTALL_HINT
    done = subprocess.run(
        [binary, "-t", "-p", str(tmp_path), "-e", str(tmp_path / "error.log"),
         "-c", str(tmp_path / "nginx-edge.conf")],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


def test_a_replica_sees_the_client_the_host_and_no_credentials(tmp_path):
    """What the edge forwards on a /media/ miss, recorded by a double in the replica's place."""
    with EdgeDouble() as replica, running_edge(tmp_path / "edge", replica.url) as url:
        replica.requests.clear()  # the readiness probe's
        httpx.get(
            f"{url}/media/AAAAAAAAAAAAAAAAAAAAAA?timestamp=1",
            headers={"Host": "media.example.com", "Cookie": "s=1", "Authorization": "x"},
        )
        (sent,) = replica.wait_for(1)
    assert sent.path == "/media/AAAAAAAAAAAAAAAAAAAAAA?timestamp=1"  # as the client sent it
    assert sent.headers["host"] == "media.example.com"
    assert sent.headers["x-forwarded-for"] == "127.0.0.1"
    assert sent.headers["x-forwarded-proto"] == "http"
    assert "connection" not in sent.headers  # kept alive: no "close"
    assert "cookie" not in sent.headers
    assert "authorization" not in sent.headers
