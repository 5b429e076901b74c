#!/usr/bin/env bash
# `make run`: the service on embedded defaults (SQLite, ./var/media, in-process cache)
# unless the environment says otherwise. Creates a development API key once.
set -euo pipefail
BIN="${VENV:-.venv}/bin"
HOST="${HOST:-127.0.0.1}"
PORT="${PORT:-8000}"
export DEBUG="${DEBUG:-1}"
export PUBLIC_BASE_URL="${PUBLIC_BASE_URL:-http://$HOST:$PORT}"
mkdir -p var

"$BIN/python" manage.py migrate --noinput -v 0
KEY_FILE=var/dev-api-key
if [ ! -s "$KEY_FILE" ] || ! "$BIN/python" manage.py shell -v 0 -c \
    "import sys; from chat.models import ApiKey; sys.exit(0 if ApiKey.objects.verify(open('$KEY_FILE').read().strip()) else 1)"; then
  "$BIN/python" manage.py create_api_key dev 2>/dev/null | tail -n 1 > "$KEY_FILE"
fi
KEY=$(cat "$KEY_FILE")

cat <<MSG

  Mediacache is starting on http://$HOST:$PORT
  store: ${S3_BUCKET:-./var/media (local directory)}   cache: ${REDIS_URL:-in-process}   db: ${DATABASE_URL:-./var/db.sqlite3}

  Development API key (kept in $KEY_FILE):
    $KEY

  Upload a file and get its short link:
    curl -F file=@voice.ogg -H 'Authorization: Bearer $KEY' http://$HOST:$PORT/api/attachments/

  Then fetch it (twice: X-Cache MISS, then HIT):
    curl -sD - -o /dev/null <short_url>

  API docs: http://$HOST:$PORT/api/docs

MSG
exec "$BIN/uvicorn" config.asgi:application --host "$HOST" --port "$PORT" \
  --loop uvloop --http mediacache.fastpath:MediaHttpProtocol --no-server-header
