"""nginx (Debian's nginx-light; no third-party module) on loopback with the repository's
edge config (``deploy/edge/nginx-edge.conf``) in front of the given replicas.

The config is used as shipped but for the lines a deployment edits anyway -- the listen
address, the tombstone's loopback port, the cache folder, the pid and error log files --
each replaced where it is expected (and only there) in a copy written to a work folder,
beside a ``nginx-edge-replicas.conf`` for the run.
``daemon off`` keeps nginx in the foreground (stopped by its pid); as root the workers
run as root too (``user root``), so the cache under a test's private temporary folder
stays writable. Used by tests/test_nginx_edge.py and ``make scale`` (bench/scale.py).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONF = ROOT / "deploy" / "edge" / "nginx-edge.conf"
NGINX = "/usr/sbin/nginx"
INSTALL_HINT = "apt-get install nginx-light"
TOMBSTONE = "127.0.0.1:6082"  # the tombstone server's address in the shipped config


def nginx() -> str | None:
    return shutil.which("nginx") or (NGINX if Path(NGINX).exists() else None)


def _replace(text: str, old: str, new: str, times: int = 1) -> str:
    if text.count(old) != times:
        raise ValueError(f"{CONF.name}: expected {old!r} {times} time(s)")
    return text.replace(old, new)


def edge_conf(workdir: Path, port: int, tombstone_port: int) -> str:
    """The shipped config with this run's listen address, tombstone port, cache, pid and
    error log."""
    text = CONF.read_text()
    for old, new, times in (
        ("listen 6081 reuseport;", f"listen 127.0.0.1:{port} reuseport;", 1),
        (TOMBSTONE, f"127.0.0.1:{tombstone_port}", 2),  # its listen line and its upstream
        ("/var/cache/mediacache-edge ", f"{workdir / 'cache'} ", 1),
        ("/run/nginx-mediacache-edge.pid", str(workdir / "nginx.pid"), 1),
        ("/var/log/nginx/mediacache-edge.error.log", str(workdir / "error.log"), 1),
    ):
        text = _replace(text, old, new, times)
    return text


def nginx_edge_argv(
    workdir: Path, port: int, backends: Sequence[tuple[str, int]], tombstone_port: int
) -> list[str]:
    """``nginx`` in the foreground on 127.0.0.1:``port`` with the edge config; state in
    ``workdir`` (its ``error.log`` says why nginx would not start)."""
    binary = nginx()
    if binary is None:
        raise RuntimeError(f"nginx is not installed ({INSTALL_HINT})")
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "cache").mkdir(exist_ok=True)
    (workdir / "nginx-edge-replicas.conf").write_text(
        "".join(f"server {host}:{port_} max_fails=1 fail_timeout=5s;\n" for host, port_ in backends)
    )
    (workdir / "nginx-edge.conf").write_text(edge_conf(workdir, port, tombstone_port))
    main = ["daemon off;"]
    if os.geteuid() == 0:
        main.append("user root;")
    return [
        binary, "-p", str(workdir), "-e", str(workdir / "error.log"),
        "-c", str(workdir / "nginx-edge.conf"), "-g", " ".join(main),
    ]  # fmt: skip
