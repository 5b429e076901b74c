"""``python -m chaos.run [--soak SECONDS] [--only NAME ...]``: faults under load, long.

Starts one private stack (the service as a subprocess, with its own PostgreSQL,
Redis and S3 on loopback: ``tests.faults.Stack``), runs every scenario of
``chaos.scenarios`` with the long timing, prints one table and what each
scenario noticed, and exits 1 if any scenario failed. ``make chaos`` runs it;
``make chaos SOAK=600`` for the ten-minute soak.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import time
import traceback

from chaos import conversions, scenarios
from chaos.scenarios import Result, long_timing, table
from tests.faults import Stack

SCENARIOS = {**scenarios.SCENARIOS, **conversions.SCENARIOS}
# The conversion time limit the hanging-decoder scenario waits for (production's 60 s
# would make it a minute per upload); no other scenario converts anything.
TRANSCODE_TIMEOUT = "5"

SERVICE_LOG = os.path.join(tempfile.gettempdir(), "mediacache-chaos-service.log")


def _stop_on_sigterm(signum, frame) -> None:
    raise SystemExit(143)  # unwinds through Stack.__exit__: every process is ended


def run(names: list[str], soak: float) -> list[Result]:
    timing = long_timing(soak)
    results: list[Result] = []
    print("[chaos] starting PostgreSQL, Redis, S3 and the service on 127.0.0.1 ...", flush=True)
    with Stack(
        keep_log=SERVICE_LOG, extra_env={"MEDIA_TRANSCODE_TIMEOUT": TRANSCODE_TIMEOUT}
    ) as stack:
        print(f"[chaos] service at {stack.url}", flush=True)
        for name in names:
            print(f"[chaos] {name} ...", flush=True)
            started = time.monotonic()
            try:
                result = SCENARIOS[name](stack, timing)
            except Exception as exc:  # one broken scenario still leaves a table
                traceback.print_exc()
                result = Result(name, name, problems=[f"the scenario itself failed: {exc!r}"])
            verdict = "ok" if result.ok else "FAIL"
            print(f"[chaos] {name}: {verdict} in {time.monotonic() - started:.0f} s", flush=True)
            results.append(result)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chaos.run", description=__doc__)
    parser.add_argument(
        "--soak", type=float, default=60.0, help="seconds of mixed load with faults (0: none)"
    )
    parser.add_argument(
        "--only", nargs="+", choices=sorted(SCENARIOS), help="run these scenarios only"
    )
    args = parser.parse_args(argv)
    names = args.only or [n for n in SCENARIOS if n != "soak" or args.soak > 0]
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    results = run(names, args.soak)
    print()
    print(table(results))
    print()
    for result in results:
        print(result.explain())
    failed = [r.name for r in results if not r.ok]
    print()
    print(f"[chaos] the server's log: {SERVICE_LOG}")
    print(f"[chaos] {'FAILED: ' + ', '.join(failed) if failed else 'all scenarios passed'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
