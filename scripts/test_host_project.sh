#!/usr/bin/env bash
# Build the wheel, install it into clean virtualenvs, and run the example host
# project's tests against it (examples/hostproject): proof that the engine works
# inside another Django project, from its package, not from this source tree --
# on the lowest and the highest Django the package allows (5.2 LTS on Python 3.11,
# 6.0 on Python 3.12, which Django 6 needs).
#
#   HOST_DJANGO_VERSIONS="5.2 6.0"  which legs to run (default both)
#   PYTHON / PYTHON_LATEST          the interpreters of the two legs
#   HOST_VENV                       the 5.2 leg's virtualenv (6.0: "$HOST_VENV-django6.0")
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$(pwd)"
PYTHON="${PYTHON:-python3}"
HOST_VENV="${HOST_VENV:-.venv-host}"
case "$HOST_VENV" in /*) ;; *) HOST_VENV="$ROOT/$HOST_VENV" ;; esac
VERSIONS="${HOST_DJANGO_VERSIONS:-5.2 6.0}"
DIST="$(mktemp -d)"
trap 'rm -rf "$DIST"' EXIT

find_python312() {
  if [ -n "${PYTHON_LATEST:-}" ]; then echo "$PYTHON_LATEST"; return; fi
  command -v python3.12 >/dev/null 2>&1 && python3.12 -V >/dev/null 2>&1 && { command -v python3.12; return; }
  for candidate in "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.12*/bin/python3.12; do
    [ -x "$candidate" ] && { echo "$candidate"; return; }
  done
  return 1
}

"${VENV:-.venv}/bin/python" -m pip wheel -q --no-deps -w "$DIST" .

for django in $VERSIONS; do
  case "$django" in
    5.2) python="$PYTHON"; venv="$HOST_VENV" ;;
    6.0)
      python="$(find_python312)" || {
        echo "host project on Django 6.0 needs Python 3.12 (not found): set PYTHON_LATEST," \
          "or HOST_DJANGO_VERSIONS=5.2 to run the 5.2 leg only" >&2
        exit 1
      }
      venv="$HOST_VENV-django6.0" ;;
    *) echo "unknown Django version $django (5.2 or 6.0)" >&2; exit 2 ;;
  esac
  echo "[host project] Django $django on $("$python" -V 2>&1)"
  [ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --upgrade pip
  # The host's own stack (its Django, a server, a driver, test tools), then the wheel itself.
  "$venv/bin/python" -m pip install -q "Django~=$django.0" "psycopg[binary]>=3.2" \
    "uvicorn[standard]>=0.54,<0.55" "pytest>=8.3" "pytest-django>=4.9" "moto[server]>=5.0.20"
  "$venv/bin/python" -m pip install -q --force-reinstall --no-deps "$DIST"/mediacache-*.whl
  "$venv/bin/python" -m pip install -q "$DIST"/mediacache-*.whl "Django~=$django.0"
  "$venv/bin/python" -c "import django; assert django.get_version().startswith('$django'), django.get_version()"
  (cd examples/hostproject && "$venv/bin/python" -m pytest "$@")
done
