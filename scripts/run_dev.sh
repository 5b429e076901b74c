#!/usr/bin/env bash
# `make run`: the service on embedded defaults (SQLite, ./var/media, in-process cache,
# the database task queue with its worker) unless the environment says otherwise. Writes a development .env once and creates a
# development API key once.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${VENV:-.venv}/bin"
mkdir -p var

# .env: the development settings, read by config/settings.py, so every
# `.venv/bin/python manage.py ...` sees what this server sees. Written on the first run,
# never overwritten (edit it to keep another PORT or PUBLIC_BASE_URL); a real environment
# variable beats its lines.
if [ ! -e .env ]; then
  first_host="${HOST:-127.0.0.1}"
  first_port="${PORT:-8000}"
  echo "==> Writing .env: development settings (DEBUG=1, a new SECRET_KEY, PUBLIC_BASE_URL, PORT)"
  secret=$("$BIN/python" -c 'import secrets; print(secrets.token_urlsafe(50))')
  (
    umask 077
    cat > .env <<ENV
# Development settings written by \`make run\`; never overwritten, ignored by git.
# Read by config/settings.py (the server and every manage.py command) and by
# scripts/run_dev.sh (PORT, HOST); a real environment variable beats a line here.
DEBUG=1
SECRET_KEY=$secret
PUBLIC_BASE_URL=${PUBLIC_BASE_URL:-http://$first_host:$first_port}
PORT=$first_port
ENV
  )
fi

dotenv_get() {
  "$BIN/python" -c 'import sys; from dotenv import dotenv_values
print(dotenv_values(".env").get(sys.argv[1]) or "")' "$1"
}

# HOST and PORT: the environment, else .env, else 127.0.0.1:8000.
DOTENV_HOST=$(dotenv_get HOST)
DOTENV_PORT=$(dotenv_get PORT)
DOTENV_URL=$(dotenv_get PUBLIC_BASE_URL)
HOST="${HOST:-${DOTENV_HOST:-127.0.0.1}}"
PORT="${PORT:-${DOTENV_PORT:-8000}}"
# PUBLIC_BASE_URL: the environment, else .env's while this run listens where .env says;
# a HOST or PORT given for this run alone gets links to itself, and a note.
if [ -z "${PUBLIC_BASE_URL:-}" ]; then
  if [ -n "$DOTENV_URL" ] && [ "$HOST" = "${DOTENV_HOST:-127.0.0.1}" ] \
      && [ "$PORT" = "${DOTENV_PORT:-8000}" ]; then
    PUBLIC_BASE_URL="$DOTENV_URL"
  else
    PUBLIC_BASE_URL="http://$HOST:$PORT"
    if [ -n "$DOTENV_URL" ]; then
      echo "==> Note: this run's links start with $PUBLIC_BASE_URL, but manage.py commands" \
        "read PUBLIC_BASE_URL=$DOTENV_URL from .env: edit .env to keep this HOST/PORT."
    fi
  fi
fi
export DEBUG="${DEBUG:-1}"
export PUBLIC_BASE_URL

echo "==> Migrating the database (${DATABASE_URL:-./var/db.sqlite3})"
"$BIN/python" manage.py migrate --noinput -v 0
KEY_FILE=var/dev-api-key
if [ ! -s "$KEY_FILE" ] || ! "$BIN/python" manage.py shell -v 0 -c \
    "import sys; from chat.models import ApiKey; sys.exit(0 if ApiKey.objects.verify(open('$KEY_FILE').read().strip()) else 1)"; then
  echo "==> Creating a development API key"
  "$BIN/python" manage.py create_api_key dev 2>/dev/null | tail -n 1 > "$KEY_FILE"
fi
KEY=$(cat "$KEY_FILE")

cat <<MSG

  Mediacache is starting on http://$HOST:$PORT   (links: $PUBLIC_BASE_URL/media/...)
  store: ${S3_BUCKET:-./var/media (local directory)}   cache: ${REDIS_URL:-in-process}   db: ${DATABASE_URL:-./var/db.sqlite3}
  task worker: ${TASKS_BACKEND:-database} queue, started beside the server (sends, webhooks, receipts)

  Development API key (kept in $KEY_FILE):
    $KEY

  Upload the sample voice note and get its short link:
    curl -F file=@tests/fixtures/voice.ogg -H 'Authorization: Bearer $KEY' http://$HOST:$PORT/api/attachments/

  Then fetch it (twice: X-Cache MISS, then HIT):
    curl -sD - -o /dev/null <short_url>

  API docs: http://$HOST:$PORT/api/docs
  Commands: $BIN/python manage.py --help   (settings from .env, as this server)

MSG
# The task worker (sends, webhooks, receipts) beside the web server; both stop together.
"$BIN/python" manage.py run_worker &
WORKER=$!
"$BIN/python" -m uvicorn config.asgi:application --host "$HOST" --port "$PORT" \
  --loop uvloop --http mediacache.fastpath:MediaHttpProtocol --no-server-header &
WEB=$!
trap 'kill -TERM $WEB $WORKER 2>/dev/null' INT TERM
status=0
wait $WEB || status=$?
kill -TERM $WORKER 2>/dev/null || true
wait $WORKER 2>/dev/null || true
exit $status
