# Mediacache: the service with its production server (scripts/serve.sh).
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    MEDIACACHE_VAR_DIR=/var/lib/mediacache
RUN apt-get update \
 && apt-get install -y --no-install-recommends libmagic1 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --home /app --shell /usr/sbin/nologin mediacache \
 && mkdir -p /var/lib/mediacache && chown mediacache /var/lib/mediacache

WORKDIR /app
COPY pyproject.toml README.md ./
COPY config config
COPY mediacache mediacache
COPY chat chat
COPY evolution evolution
COPY ops ops
COPY manage.py ./
COPY scripts/serve.sh scripts/serve.sh
RUN pip install ".[service]"

USER mediacache
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s CMD python -c "import urllib.request,os; urllib.request.urlopen(f'http://127.0.0.1:{os.environ.get(\"PORT\",\"8000\")}/healthz', timeout=2)"
CMD ["scripts/serve.sh"]
