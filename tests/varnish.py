"""Varnish (Debian's 7.1 with vmod-xkey) on loopback with the repository's VCL
(``deploy/edge/mediacache.vcl``) in front of the given replicas.

The VCL is used as shipped; only ``replicas.vcl`` is written for the run (in its own
folder, first in ``vcl_path``). ``-j none``: no privilege separation, so the work
folder under a test's temporary directory stays readable; ``-T none``: no admin port.
Used by tests/test_varnish_edge.py and ``make scale`` (bench/scale.py).
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VCL = ROOT / "deploy" / "edge" / "mediacache.vcl"
VARNISHD = "/usr/sbin/varnishd"


def varnishd() -> str | None:
    return shutil.which("varnishd") or (VARNISHD if Path(VARNISHD).exists() else None)


def replicas_vcl(backends: Sequence[tuple[str, int]]) -> str:
    """The ``replicas`` hash director over ``backends`` (host, port), probed on /healthz."""
    lines = [
        "probe healthz {",
        '    .url = "/healthz"; .interval = 1s; .timeout = 1s; .window = 3; .threshold = 1;',
        "    .initial = 3;",
        "}",
    ]
    for n, (host, port) in enumerate(backends, 1):
        lines += [
            f"backend replica{n} {{",
            f'    .host = "{host}"; .port = "{port}"; .probe = healthz;',
            "}",
        ]
    lines += ["sub vcl_init {", "    new replicas = directors.hash();"]
    lines += [f"    replicas.add_backend(replica{n}, 1.0);" for n in range(1, len(backends) + 1)]
    lines += ["}"]
    return "\n".join(lines) + "\n"


def varnish_argv(
    workdir: Path, port: int, backends: Sequence[tuple[str, int]], *, memory: str = "256m"
) -> list[str]:
    """``varnishd -F`` on 127.0.0.1:``port`` with the repository's VCL; state in ``workdir``."""
    binary = varnishd()
    if binary is None:
        raise RuntimeError("varnishd is not installed (apt-get install varnish varnish-modules)")
    config = workdir / "vcl"
    config.mkdir(parents=True, exist_ok=True)
    (config / "replicas.vcl").write_text(replicas_vcl(backends))
    return [
        binary, "-F", "-n", str(workdir / "state"), "-a", f"127.0.0.1:{port}",
        "-T", "none", "-j", "none", "-s", f"malloc,{memory}",
        "-p", f"vcl_path={config}:{VCL.parent}:/usr/share/varnish/vcl",
        "-f", str(VCL),
    ]  # fmt: skip
