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
# `manage.py check --deploy --fail-level ERROR`, its findings as log lines (LOG_FORMAT).
"$PYTHON" -m config.deploycheck
# One list of trusted proxies (CIDRs) for uvicorn's client address (Django's REMOTE_ADDR)
# and the engine's (the 404 limiter): the rightmost X-Forwarded-For hop not in it.
export TRUSTED_PROXIES="${TRUSTED_PROXIES:-127.0.0.1/32,::1/128}"
if [ -n "${FORWARDED_ALLOW_IPS:-}" ]; then
  echo "serve.sh: FORWARDED_ALLOW_IPS is ignored; set TRUSTED_PROXIES (README, Deploy)" >&2
  unset FORWARDED_ALLOW_IPS
fi
case ",${TRUSTED_PROXIES// /}," in *,\*,*)
  echo "serve.sh: TRUSTED_PROXIES='*' would believe any forged X-Forwarded-For; list the proxies' CIDRs" >&2
  exit 2 ;;
esac
# uvicorn's own loggers in the service's format (config/logconfig.py): with LOG_FORMAT=json
# every line is one JSON object, the supervisor's and the workers' start-up included.
LOG_CONFIG="$("$PYTHON" -m config.logconfig)"

# uvicorn's command line; its supervisor stops listening at SIGTERM (config/server.py),
# so new connections are refused while requests in flight get GRACEFUL_TIMEOUT to finish.
exec "$PYTHON" -m config.server config.asgi:application \
  --host "${HOST:-0.0.0.0}" --port "${PORT:-8000}" \
  --workers "${WEB_CONCURRENCY:-2}" \
  --loop uvloop --http mediacache.fastpath:MediaHttpProtocol \
  --proxy-headers --forwarded-allow-ips "$TRUSTED_PROXIES" \
  --timeout-graceful-shutdown "${GRACEFUL_TIMEOUT:-25}" \
  --timeout-keep-alive "${KEEP_ALIVE_TIMEOUT:-75}" \
  --log-config "$LOG_CONFIG" --no-server-header --no-access-log
