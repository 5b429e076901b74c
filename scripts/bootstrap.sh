#!/usr/bin/env bash
# Create the virtualenv and install the project with its dev tools.
# libmagic (content sniffing) is a system library: install it when missing.
set -euo pipefail
PYTHON="${PYTHON:-python3}"
VENV="${VENV:-.venv}"

if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "Python 3.11+ is needed (found: $("$PYTHON" --version 2>&1)); set PYTHON=..." >&2
  exit 1
fi
echo "==> Installing Mediacache and its dependencies into $VENV (about a minute the first time)"
if [ ! -x "$VENV/bin/python" ]; then
  echo "    creating the virtualenv $VENV"
  "$PYTHON" -m venv "$VENV"
fi
echo "    pip install -e \".[service,dev]\""
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q -e ".[service,dev]"

if ! "$VENV/bin/python" -c 'import magic' 2>/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q libmagic1
  else
    echo "libmagic is missing: install it (Debian/Ubuntu: apt-get install libmagic1; macOS: brew install libmagic)" >&2
    exit 1
  fi
fi
echo "==> $VENV is ready (${SECONDS}s)"
