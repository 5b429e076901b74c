"""The load-balancer recipe (deploy/nginx/balancer.conf) in a real nginx on loopback, in front
of two replicas: one media hash always lands on the same replica, whatever the query string
or URL form; the rest is spread; a replica that goes away hands its hashes to the other."""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from mediacache.core.hashes import new_media_hash
from tests.servers import free_port, serve_asgi

ROOT = Path(__file__).resolve().parent.parent
RECIPE = ROOT / "deploy" / "nginx" / "balancer.conf"
NGINX = "/usr/sbin/nginx"


class Recorded:
    """An ASGI app that notes each request's path under the replica's name, then serves it."""

    def __init__(self, app, name: str, seen: dict[str, list[str]]) -> None:
        self.app, self.name, self.seen = app, name, seen

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            self.seen[scope["path"]].append(self.name)
        await self.app(scope, receive, send)


@pytest.fixture
def balanced(live, tmp_path: Path) -> Iterator[tuple[str, dict[str, list[str]], list]]:
    """(nginx's URL, path -> replicas that served it, the replicas' servers)."""
    assert os.path.exists(NGINX), "nginx missing: apt-get install nginx-light"
    from config.asgi import build_application

    seen: dict[str, list[str]] = defaultdict(list)
    with contextlib.ExitStack() as stack:
        servers = [
            stack.enter_context(
                serve_asgi(Recorded(build_application(), name, seen), http="httptools")
            )
            for name in ("a", "b")
        ]
        replicas = "".join(
            f"server {s.url.removeprefix('http://')} max_fails=1 fail_timeout=30s;\n"
            for s in servers
        )
        (tmp_path / "mediacache-replicas.conf").write_text(replicas)
        port = free_port()
        recipe = RECIPE.read_text().replace("listen 80;", f"listen 127.0.0.1:{port};")
        assert f"127.0.0.1:{port}" in recipe
        (tmp_path / "balancer.conf").write_text(recipe)
        temps = ""
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (tmp_path / kind).mkdir()
            temps += f"    {kind}_temp_path {tmp_path}/{kind};\n"
        (tmp_path / "nginx.conf").write_text(
            "daemon off;\nworker_processes 1;\n"
            f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log warn;\n"
            "events { worker_connections 256; }\n"
            f"http {{\n    access_log off;\n{temps}    include balancer.conf;\n}}\n"
        )
        process = subprocess.Popen(
            [NGINX, "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 20
            while True:
                assert process.poll() is None, (tmp_path / "error.log").read_text()
                with contextlib.suppress(httpx.TransportError):
                    httpx.get(f"{url}/healthz", timeout=1)
                    break
                assert time.monotonic() < deadline
                time.sleep(0.05)
            seen.clear()
            yield url, seen, servers
        finally:
            process.terminate()
            process.wait(timeout=10)


def test_one_hash_always_lands_on_the_same_replica(balanced):
    url, seen, _ = balanced
    hashes = [new_media_hash() for _ in range(40)]
    for round_ in range(3):
        for h in hashes:
            # Evolution's ?timestamp= changes every time; the extension form is the same object.
            for path in (f"/media/{h}?timestamp={round_}", f"/media/{h}.ogg"):
                assert httpx.get(url + path).status_code == 404  # unknown: routing is the point
    by_hash = {h: set(seen[f"/media/{h}"]) | set(seen[f"/media/{h}.ogg"]) for h in hashes}
    assert all(len(replicas) == 1 for replicas in by_hash.values()), by_hash
    owners = [next(iter(r)) for r in by_hash.values()]
    assert 8 <= owners.count("a") <= 32, owners  # both replicas hold a share


def test_the_rest_is_spread_over_both_replicas(balanced):
    url, seen, _ = balanced
    for _ in range(20):
        httpx.get(f"{url}/healthz")
    assert set(seen["/healthz"]) == {"a", "b"}


def test_a_replica_that_goes_away_hands_its_hashes_to_the_other(balanced):
    url, seen, servers = balanced
    hashes = [new_media_hash() for _ in range(20)]
    for h in hashes:
        httpx.get(f"{url}/media/{h}")
    on_a = [h for h in hashes if seen[f"/media/{h}"] == ["a"]]
    assert on_a
    servers[0].server.should_exit = True
    servers[0].thread.join(10)
    for h in on_a:
        assert httpx.get(f"{url}/media/{h}").status_code == 404  # answered, by b
        assert seen[f"/media/{h}"] == ["a", "b"]
