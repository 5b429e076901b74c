#!/usr/bin/env python3
"""Make sure the PostgreSQL and Redis the tests use are answering, and Chromium, nginx and
Varnish (with vmod-xkey) are there.

Used by `make test`. Reads TEST_DATABASE_URL and TEST_REDIS_URL (defaults on
127.0.0.1). For a local address that does not answer it starts the server the
machine has, installing it first with apt-get when running as root. If none of
that works it says how to provide the service and fails: tests are never skipped.
Standard library only: it runs before anything is installed.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import sys
import time
from urllib.parse import urlparse

DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/test"
DEFAULT_REDIS = "redis://127.0.0.1:6379/9"
LOCAL = {"127.0.0.1", "localhost", "::1"}
CHROMIUM = "/usr/bin/chromium"  # Debian's package; Playwright drives it (never downloads one)
# Debian's nginx-light: the reverse proxy of tests/test_proxy.py and the edge cache of
# tests/test_nginx_edge.py (stock nginx: Debian's libnginx-mod-http-cache-purge 2.3
# crashes nginx 1.22 on every PURGE, so deploy/edge/nginx-edge.conf does without it).
NGINX = "/usr/sbin/nginx"
VARNISHD = "/usr/sbin/varnishd"  # Debian's varnish: the edge of tests/test_varnish_edge.py
XKEY_VMODS = "/usr/lib/*/varnish/vmods/libvmod_xkey.so"  # from Debian's varnish-modules


def say(message: str) -> None:
    print(f"[test-services] {message}", flush=True)


def answers(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for(host: str, port: int, seconds: float = 30) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if answers(host, port):
            return True
        time.sleep(0.5)
    return False


def run(*cmd: str) -> bool:
    say("$ " + " ".join(cmd))
    return subprocess.run(cmd, check=False).returncode == 0


def apt_install(*packages: str) -> bool:
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return False
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-q"], env=env, check=False)
    return subprocess.run(["apt-get", "install", "-y", "-q", *packages], env=env).returncode == 0


def trust_loopback(version: str) -> None:
    """A freshly installed cluster asks for passwords; tests connect with none."""
    hba = f"/etc/postgresql/{version}/main/pg_hba.conf"
    with open(hba) as fh:
        current = fh.read()
    rules = "host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust\n"
    if rules not in current:
        with open(hba, "w") as fh:
            fh.write(rules + current)


def ensure_postgres(url: str) -> str | None:
    parsed = urlparse(url)
    host, port = parsed.hostname or "127.0.0.1", parsed.port or 5432
    if answers(host, port):
        return None
    if host not in LOCAL:
        return f"PostgreSQL at {host}:{port} does not answer"
    installed_now = False
    if not glob.glob("/etc/postgresql/*/main"):
        say("PostgreSQL is not installed; installing it (apt-get)")
        if not apt_install("postgresql"):
            return "PostgreSQL is not installed and could not be installed (need root and apt-get)"
        installed_now = True
    for conf in sorted(glob.glob("/etc/postgresql/*/main")):
        version = conf.split("/")[3]
        if installed_now:
            trust_loopback(version)
        run("pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart")
    if wait_for(host, port):
        return None
    return f"PostgreSQL did not come up on {host}:{port}"


def ensure_redis(url: str) -> str | None:
    parsed = urlparse(url)
    host, port = parsed.hostname or "127.0.0.1", parsed.port or 6379
    if answers(host, port):
        return None
    if host not in LOCAL:
        return f"Redis at {host}:{port} does not answer"
    if not shutil.which("redis-server"):
        say("redis-server is not installed; installing it (apt-get)")
        if not apt_install("redis-server"):
            return (
                "redis-server is not installed and could not be installed (need root and apt-get)"
            )
    run(
        "redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "--port", str(port),
        "--save", "", "--appendonly", "no",
    )  # fmt: skip
    if wait_for(host, port):
        return None
    return f"Redis did not come up on {host}:{port}"


def main() -> int:
    db_url = os.environ.get("TEST_DATABASE_URL", DEFAULT_DB)
    redis_url = os.environ.get("TEST_REDIS_URL", DEFAULT_REDIS)
    problems = [p for p in (ensure_postgres(db_url), ensure_redis(redis_url)) if p]
    if not shutil.which("redis-server"):
        say("redis-server is needed for the fault tests; installing it")
        if not apt_install("redis-server"):
            problems.append("redis-server binary missing (fault tests start their own)")
    if not os.path.exists(CHROMIUM):
        say("Chromium is needed for the browser test of /ops/; installing it (apt-get)")
        if not apt_install("chromium"):
            problems.append(f"{CHROMIUM} missing (browser test): apt-get install chromium, as root")
    if not os.path.exists(NGINX):
        say("nginx is needed as the reverse proxy and edge of the tests; installing it (apt-get)")
        if not apt_install("nginx-light"):
            problems.append(f"{NGINX} missing (proxy tests): apt-get install nginx-light, as root")
    if not os.path.exists(VARNISHD) or not glob.glob(XKEY_VMODS):
        say("Varnish with vmod-xkey is needed as the edge of the edge tests; installing it")
        if not apt_install("varnish", "varnish-modules"):
            problems.append(
                f"{VARNISHD} or vmod-xkey missing (edge tests): "
                "apt-get install varnish varnish-modules, as root"
            )
    if problems:
        for problem in problems:
            say(f"PROBLEM: {problem}")
        say(
            "Provide them and run again: e.g. `apt-get install postgresql redis-server`, or "
            "point TEST_DATABASE_URL=postgres://user@host:port/db and "
            "TEST_REDIS_URL=redis://host:port/9 at running servers (trust or password in the URL)."
        )
        return 1
    say(f"PostgreSQL and Redis answer ({db_url.split('@')[-1]}, {redis_url.split('@')[-1]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
