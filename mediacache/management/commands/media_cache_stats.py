"""How the cache is doing: hit rate, latency, Redis memory, S3 requests, what expires soon.

It reads the per-minute series the server's processes write (``engine.series``): in
Redis, or without Redis in the stats file they share on this machine
(:class:`mediacache.observability.timeseries.FileSeries`), so this command, run in a
process of its own, shows what ``/ops/`` shows.
"""

from __future__ import annotations

import json
import time
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from mediacache.core.counters import OUTCOMES
from mediacache.engine import Engine, get_engine
from mediacache.observability.timeseries import FileSeries, StatsFileError
from mediacache.registry import media_model
from mediacache.tiers.topology import memory_info

_SCAN_LIMIT = 1_000_000


class Command(BaseCommand):
    help = (
        "Hit rate, p50/p95 latency, requests by outcome, Redis memory and keys, S3 GETs and "
        "objects expiring in the next 24 h, over the last --minutes (every process: through "
        "Redis, or without it through the stats file the server writes on this machine)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--minutes", type=int, default=60, help="window (default 60)")
        parser.add_argument("--json", action="store_true", help="print one JSON object")
        parser.add_argument("--watch", type=float, metavar="SECONDS", help="refresh every N s")

    def handle(
        self, *args: Any, minutes: int, json: bool, watch: float | None, **options: Any
    ) -> None:
        while True:
            try:
                report = collect(minutes)
            except StatsFileError as exc:
                raise CommandError(f"cannot read the stats: {exc}") from exc
            if json:
                self.stdout.write(_json_dumps(report))
            else:
                if watch:
                    self.stdout.write("\x1b[2J\x1b[H", ending="")
                self.stdout.write(render(report))
            if not watch:
                return
            time.sleep(watch)


def collect(minutes: int) -> dict[str, Any]:
    engine = get_engine()
    series = engine.series
    window = series.window(minutes)
    p50, p95 = window.latency_quantile(0.5), window.latency_quantile(0.95)
    stats_file = series.path if isinstance(series, FileSeries) else None
    report: dict[str, Any] = {
        "window_minutes": minutes,
        "shared": True,  # every process's counts (without Redis: this machine's)
        # "redis", or the stats file the processes on this machine write (no Redis)
        "source": "redis" if stats_file is None else str(stats_file),
        # False: no process has written any counts there yet (is the service running?)
        "recorded": stats_file is None or stats_file.exists(),
        "requests": {outcome: window.requests(outcome) for outcome in OUTCOMES},
        "hit_rate": window.hit_rate,
        "latency_p50_ms": None if p50 is None else p50 * 1000,
        "latency_p95_ms": None if p95 is None else p95 * 1000,
        "bytes_served": int(window.total("bytes")),
        "s3_gets": int(window.total("s3:get") + window.total("s3:get_range")),
        "s3_errors": int(window.total("s3err:get") + window.total("s3err:get_range")),
        "coalesced_waits": int(window.total("coalesced")),
        "redis_errors": int(window.total("redis_err")),
        "evolution_sends": {r: int(window.total(f"evo:{r}")) for r in ("sent", "failed")},
        "redis": _redis_report(engine),
        "expiring_24h": _expiring_within(timedelta(hours=24)),
    }
    return report


def _expiring_within(delta: timedelta) -> int | None:
    registered = media_model()
    field = registered.fields.expires_at
    if field is None:
        return None
    now = timezone.now()
    window = {f"{field}__gt": now, f"{field}__lte": now + delta}
    return registered.queryset().filter(**window).count()


def _redis_report(engine: Engine) -> dict[str, Any] | None:
    if engine.writer is None:
        return None
    client = engine.writer.client
    try:
        memory = memory_info(client)  # a cluster: summed over its masters
        objects = 0
        # On a cluster scan_iter walks every master in turn.
        for key in client.scan_iter(match="media:*", count=1000):
            if not key.endswith(b":t"):  # the tail of a split value is not an object
                objects += 1
            if objects >= _SCAN_LIMIT:
                break
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}
    assert engine.redis_topology is not None
    return {
        "used_memory": memory["used_memory"],
        "used_memory_human": f"{memory['used_memory'] / 1048576:.2f}M",
        "maxmemory": memory["maxmemory"],
        "masters": memory["masters"],
        "topology": engine.redis_topology.describe(),
        "media_keys": objects,
    }


def _fmt(value: float | None, pattern: str) -> str:
    return "-" if value is None else pattern.format(value)


def render(report: dict[str, Any]) -> str:
    requests = report["requests"]
    redis = report["redis"]
    source = report["source"]
    rows = [
        ("window", f"last {report['window_minutes']} min"),
        ("counted by", "every process of every replica, through Redis" if source == "redis" else
                       f"the processes on this machine (no REDIS_URL), in {source}"),
    ]  # fmt: skip
    if not report["recorded"]:
        rows.append(("note", "nothing recorded yet: is the service running? It writes its "
                             "counts every MEDIA_STATS_INTERVAL seconds"))  # fmt: skip
    rows += [
        ("hit rate", _fmt(report["hit_rate"], "{:.1%}") + "   (aim > 80%)"),
        ("latency p50 / p95", f"{_fmt(report['latency_p50_ms'], '{:.1f}')} / "
                              f"{_fmt(report['latency_p95_ms'], '{:.1f}')} ms   (aim < 50 ms)"),
        ("requests", "  ".join(f"{k}={v}" for k, v in requests.items())),
        ("bytes served", f"{report['bytes_served']:,}"),
        ("S3 GETs / errors", f"{report['s3_gets']} / {report['s3_errors']}"),
        ("coalesced waits", str(report["coalesced_waits"])),
        ("Redis errors", str(report["redis_errors"])),
        ("Evolution sends", f"sent={report['evolution_sends']['sent']} "
                            f"failed={report['evolution_sends']['failed']}"),
    ]  # fmt: skip
    if redis is None:
        rows.append(("Redis", "not configured (in-process cache)"))
    elif "error" in redis:
        rows.append(("Redis", f"unreachable: {redis['error']}"))
    else:
        memory = f"{redis['used_memory_human']} ({redis['used_memory']:,} B)   (aim < 500 MB)"
        rows.append(("Redis", f"{redis['topology']} ({redis['masters']} master(s), summed)"))
        rows.append(("Redis used_memory", memory))
        rows.append(("media keys in Redis", f"{redis['media_keys']:,}"))
    expiring = report["expiring_24h"]
    rows.append(("expiring in 24 h", "-" if expiring is None else f"{expiring:,}"))
    width = max(len(label) for label, _ in rows)
    return "\n".join(f"{label.ljust(width)}  {value}" for label, value in rows) + "\n"


def _json_dumps(report: dict[str, Any]) -> str:
    return json.dumps(report, sort_keys=True)
