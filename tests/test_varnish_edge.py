"""A real edge on loopback: Varnish with the repository's VCL (deploy/edge/) in front of the
service, purged by the engine's own hook (MEDIA_EDGE_PURGE=varnish)."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from mediacache.core.settings import MediaSettings
from mediacache.edge import edge_hook_for
from mediacache.engine import get_engine
from tests.conftest import upload
from tests.edge_double import engine_purging
from tests.servers import free_port
from tests.varnish import varnish_argv, varnishd


@pytest.fixture
def varnish(live, tmp_path: Path) -> Iterator[str]:
    """Varnish in front of the live service; the engine purges it. Its URL."""
    assert varnishd(), "varnishd missing: apt-get install varnish varnish-modules"
    backend = urlsplit(live.url)
    port = free_port()
    log = tmp_path / "varnish.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            varnish_argv(tmp_path, port, [(backend.hostname, backend.port)], memory="32m"),
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    settings = MediaSettings(EDGE_PURGE="varnish", EDGE_PURGE_URLS=(url + "/",))
    try:
        with engine_purging(edge_hook_for(settings)):
            deadline = time.monotonic() + 30
            while True:  # up, and the backend's probe says healthy
                assert process.poll() is None, log.read_text()
                try:
                    if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
            yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def test_the_edge_keeps_one_copy_per_object_whatever_the_query(api, voice_note, varnish):
    created = upload(api, voice_note, "voice.ogg")
    path = urlsplit(created["short_url"]).path
    first = httpx.get(f"{varnish}{path}")
    assert (first.status_code, first.headers["x-edge"]) == (200, "MISS")
    again = httpx.get(f"{varnish}{path}?timestamp=1730000000000")  # what Evolution sends
    assert (again.headers["x-edge"], again.content) == ("HIT", voice_note)
    assert len(again.headers["x-varnish"].split()) == 2  # Varnish's own mark of a hit
    assert "s-maxage=3600" in again.headers["cache-control"]
    assert "surrogate-key" not in again.headers  # the tags stay at the edge
    assert "xkey" not in again.headers
    ranged = httpx.get(f"{varnish}{path}", headers={"Range": "bytes=0-9"})
    assert (ranged.status_code, ranged.content) == (206, voice_note[:10])


def test_a_deleted_object_answers_404_at_the_edge_once_the_purge_is_sent(api, voice_note, varnish):
    created = upload(api, voice_note, "voice.ogg")
    path = urlsplit(created["short_url"]).path
    for _ in range(2):
        httpx.get(f"{varnish}{path}")
    assert httpx.get(f"{varnish}{path}").headers["x-edge"] == "HIT"
    deleted_at = time.monotonic()
    assert api.delete(f"/api/attachments/{created['id']}").status_code == 204
    assert get_engine().edge.flush(10)  # the purge went out and Varnish confirmed it
    gone = httpx.get(f"{varnish}{path}")
    seconds = time.monotonic() - deleted_at
    assert gone.status_code == 404, gone.headers
    print(f"deleted object 404 at the edge {seconds * 1000:.0f} ms after the delete began")
    assert httpx.get(f"{varnish}{path}?timestamp=1").status_code == 404


def test_only_loopback_may_purge_and_a_url_purge_works_too(api, voice_note, varnish):
    created = upload(api, voice_note, "voice.ogg")
    path = urlsplit(created["short_url"]).path
    httpx.get(f"{varnish}{path}")
    assert httpx.get(f"{varnish}{path}").headers["x-edge"] == "HIT"
    assert httpx.request("PURGE", f"{varnish}{path}").status_code == 200  # by URL
    assert httpx.get(f"{varnish}{path}").headers["x-edge"] == "MISS"


def test_the_api_is_never_cached_at_the_edge(api, varnish, api_key):
    headers = {"Authorization": f"Bearer {api_key}"}
    for _ in range(2):
        response = httpx.get(f"{varnish}/api/attachments/999999", headers=headers)
        assert response.status_code == 404
        assert response.headers["x-edge"] == "MISS"


def test_the_shipped_vcl_and_its_example_replicas_compile(tmp_path):
    from tests.varnish import VCL

    done = subprocess.run(
        [varnishd(), "-C", "-j", "none", "-n", str(tmp_path), "-f", str(VCL),
         "-p", f"vcl_path={VCL.parent}:/usr/share/varnish/vcl"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
