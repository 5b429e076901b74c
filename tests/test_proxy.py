"""Behind a real reverse proxy: nginx on loopback in front of ``scripts/serve.sh`` (2 workers).

nginx appends the address it was connected from to ``X-Forwarded-For``, as Railway's,
Render's, Heroku's routers and a Kubernetes ingress do. Every test client is on
loopback, so to play a client on the internet the test sends ``X-Test-Client: <address>``
and nginx's realip module (trusting only 127.0.0.1) takes it as the connecting address
— what nginx then appends is exactly what a remote client would get. The header itself
never reaches the service.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from mediacache.core.hashes import new_media_hash
from tests.conftest import FIXTURES
from tests.servers import free_port
from tests.service_process import production_environment, serve_sh, stop, wait_until_answering

ROOT = Path(__file__).resolve().parent.parent
NGINX = "/usr/sbin/nginx"
LIMIT = 10  # MEDIA_NOT_FOUND_LIMIT per worker
GATEWAY = "198.51.100.10"  # Evolution, say, behind the proxy
GUESSER = "203.0.113.66"

NGINX_CONF = """\
daemon off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    client_max_body_size 10m;
    client_body_buffer_size 10m;
    server {{
        listen 127.0.0.1:{port};
        # The test's stand-in for a client on the internet (see the module docstring).
        set_real_ip_from 127.0.0.1;
        real_ip_header X-Test-Client;
        location / {{
            proxy_pass http://127.0.0.1:{upstream};
            proxy_buffering off;
            proxy_set_header Host $host;
            proxy_set_header X-Test-Client "";
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto https;
        }}
    }}
}}
"""


@pytest.fixture
def environment(tmp_path: Path) -> dict[str, str]:
    """Production-like (no DEBUG, no METRICS_TOKEN), embedded database and store."""
    return production_environment(
        tmp_path,
        MEDIA_NOT_FOUND_LIMIT=str(LIMIT),
        # What PaaS guides used to say; serve.sh now ignores it (TRUSTED_PROXIES rules).
        FORWARDED_ALLOW_IPS="*",
    )


@pytest.fixture
def proxied(environment: dict[str, str], tmp_path: Path) -> Iterator[tuple[str, str, Path]]:
    """(nginx's URL, the service's own URL, the service's log)."""
    if not os.path.exists(NGINX):
        pytest.fail(f"{NGINX} missing: apt-get install nginx-light (make test installs it)")
    log_path = tmp_path / "serve.log"
    prefix = tmp_path / "nginx"
    prefix.mkdir()
    port = free_port()
    conf = prefix / "nginx.conf"
    conf.write_text(NGINX_CONF.format(prefix=prefix, port=port, upstream=environment["PORT"]))
    with serve_sh(environment, log_path) as service:
        nginx = subprocess.Popen(
            [NGINX, "-e", str(prefix / "error.log"), "-c", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        front = f"http://127.0.0.1:{port}"
        try:
            wait_until_answering(front, nginx, prefix / "error.log")
            yield front, service.url, log_path
        finally:
            stop(nginx)


def as_client(address: str | None = None, **headers: str) -> dict[str, str]:
    sent = {name.replace("_", "-"): value for name, value in headers.items()}
    if address is not None:
        sent["X-Test-Client"] = address
    return sent


def upload(front: str, environment: dict[str, str], count: int) -> list[str]:
    key = subprocess.run(
        [sys.executable, "manage.py", "create_api_key", "proxy-test"],
        cwd=ROOT, env=environment, capture_output=True, text=True, check=True,
    ).stdout.strip().splitlines()[-1]  # fmt: skip
    body = (FIXTURES / "voice.ogg").read_bytes()
    paths = []
    for i in range(count):
        created = httpx.post(
            f"{front}/api/attachments/",
            headers={"Authorization": f"Bearer {key}"},
            files={"file": (f"v{i}.ogg", body)},
        )
        assert created.status_code == 201, created.text
        paths.append(created.json()["short_url"].removeprefix("https://media.example.com"))
    return paths


def test_a_forged_forwarded_for_never_opens_metrics(proxied):
    front, upstream, _ = proxied
    # The one client answered without a token: a direct loopback peer, no forwarding header.
    assert httpx.get(f"{upstream}/metrics").status_code == 200
    # A client on the internet claiming to be loopback, through the proxy: 403.
    forged = as_client(GUESSER, X_Forwarded_For="127.0.0.1")
    assert httpx.get(f"{front}/metrics", headers=forged).status_code == 403
    forged_v6 = as_client(GUESSER, X_Forwarded_For="::1, 127.0.0.1")
    assert httpx.get(f"{front}/metrics", headers=forged_v6).status_code == 403
    # Anything that came through the proxy, even from this machine: 403 (use the token).
    assert httpx.get(f"{front}/metrics").status_code == 403
    # Straight to the service with a forged header: 403 too.
    direct = httpx.get(f"{upstream}/metrics", headers={"X-Forwarded-For": "127.0.0.1"})
    assert direct.status_code == 403


def test_unknown_hashes_from_the_gateway_s_address_never_block_its_valid_links(
    proxied, environment
):
    front, _, log_path = proxied
    uploaded = upload(front, environment, 5)  # uncached: uploads do not warm the caches
    valid, valid_for_loopback = uploaded[:3], uploaded[3:]
    with httpx.Client(base_url=front) as client:  # nginx opens an upstream per request
        gateway = as_client(GATEWAY, X_Forwarded_For="127.0.0.1")  # forged as well
        statuses = [
            client.get(f"/media/{new_media_hash()}", headers=gateway).status_code
            for _ in range(100)
        ]
        # Each worker answers 404 up to the limit, then 429 for unknown hashes.
        assert set(statuses) == {404, 429}
        assert statuses.count(404) <= 2 * LIMIT
        limited = client.get(f"/media/{new_media_hash()}", headers=gateway)
        assert limited.status_code == 429
        assert int(limited.headers["retry-after"]) > 0

        # The gateway's valid, uncached links: 200, the bytes, from the store.
        body = (FIXTURES / "voice.ogg").read_bytes()
        for path in valid:
            got = client.get(f"{path}?timestamp=1", headers=gateway)
            assert got.status_code == 200, got.text
            assert got.headers["x-cache"] == "MISS"
            assert got.content == body

        # Another client on the internet shares nothing with the gateway: a plain 404.
        other = client.get(f"/media/{new_media_hash()}", headers=as_client(GUESSER))
        assert other.status_code == 404

        # The limiter named the gateway's real address, never the proxy's or the forged one.
        log = log_path.read_text()
        assert f"client {GATEWAY} limited" in log
        assert "client 127.0.0.1 limited" not in log
        assert "FORWARDED_ALLOW_IPS is ignored" in log

        # Everyone sharing one address (here the proxy's own machine, as when
        # TRUSTED_PROXIES misses the proxy): limited, yet its valid links are answered.
        shared = [client.get(f"/media/{new_media_hash()}").status_code for _ in range(100)]
        assert shared.count(429) >= 100 - 2 * LIMIT
        for path in valid_for_loopback:
            got = client.get(path)
            assert (got.status_code, got.content) == (200, body)
