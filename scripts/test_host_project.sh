#!/usr/bin/env bash
# Build the wheel, install it into a clean virtualenv, and run the example host
# project's tests against it (examples/hostproject): proof that the engine works
# inside another Django project, from its package, not from this source tree.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
HOST_VENV="${HOST_VENV:-.venv-host}"
DIST="$(mktemp -d)"
trap 'rm -rf "$DIST"' EXIT

"${VENV:-.venv}/bin/python" -m pip wheel -q --no-deps -w "$DIST" .
[ -x "$HOST_VENV/bin/python" ] || "$PYTHON" -m venv "$HOST_VENV"
"$HOST_VENV/bin/python" -m pip install -q --upgrade pip
# The host's own stack (Django, a server, a driver, test tools), then the wheel itself.
"$HOST_VENV/bin/python" -m pip install -q "psycopg[binary]>=3.2" "uvicorn[standard]>=0.54,<0.55" \
  "pytest>=8.3" "pytest-django>=4.9" "moto[server]>=5.0.20"
"$HOST_VENV/bin/python" -m pip install -q --force-reinstall --no-deps "$DIST"/mediacache-*.whl
"$HOST_VENV/bin/python" -m pip install -q "$DIST"/mediacache-*.whl  # its dependencies

cd examples/hostproject
exec "../../$HOST_VENV/bin/python" -m pytest "$@"
