#!/usr/bin/env bash
# Production server: several uvicorn workers (uvloop + httptools, with the L1-hit shortcut
# of mediacache/fastpath.py), graceful shutdown on SIGTERM, Prometheus metrics shared
# between workers. Configure with the environment
# (README, "Configuration" and "Deploy").
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python}"
[ -x .venv/bin/python ] && PYTHON=.venv/bin/python

# Every worker writes its metrics here; /metrics sums them. Start empty.
export PROMETHEUS_MULTIPROC_DIR="${PROMETHEUS_MULTIPROC_DIR:-/tmp/mediacache-metrics}"
rm -rf "$PROMETHEUS_MULTIPROC_DIR" && mkdir -p "$PROMETHEUS_MULTIPROC_DIR"

if [ "${MIGRATE_ON_START:-0}" = 1 ]; then
  "$PYTHON" manage.py migrate --noinput
fi
"$PYTHON" manage.py check --deploy --fail-level ERROR

# uvicorn's command line; its supervisor stops listening at SIGTERM (config/server.py),
# so new connections are refused while requests in flight get GRACEFUL_TIMEOUT to finish.
exec "$PYTHON" -m config.server config.asgi:application \
  --host "${HOST:-0.0.0.0}" --port "${PORT:-8000}" \
  --workers "${WEB_CONCURRENCY:-2}" \
  --loop uvloop --http mediacache.fastpath:MediaHttpProtocol \
  --proxy-headers --forwarded-allow-ips "${FORWARDED_ALLOW_IPS:-127.0.0.1}" \
  --timeout-graceful-shutdown "${GRACEFUL_TIMEOUT:-25}" \
  --timeout-keep-alive "${KEEP_ALIVE_TIMEOUT:-75}" \
  --no-server-header --no-access-log
