#!/usr/bin/env bash
# What `make bench` and `make replay` need beyond the project: nginx, wrk and
# redis-server (Debian packages, installed with apt-get when running as root) and
# the `bench` extra (gunicorn, django-redis, granian, psutil).
set -euo pipefail
VENV="${VENV:-.venv}"

missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
command -v redis-server >/dev/null || missing+=(redis-server)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
  else
    echo "The benchmark needs: ${missing[*]} (Debian/Ubuntu: apt-get install ${missing[*]})" >&2
    exit 1
  fi
fi

stamp="$VENV/.bench-installed"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] \
    || ! "$VENV/bin/python" -c 'import gunicorn, django_redis, granian, psutil' 2>/dev/null; then
  "$VENV/bin/python" -m pip install -q -e '.[service,dev,bench]'
  touch "$stamp"
fi
