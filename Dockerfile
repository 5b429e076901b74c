# Mediacache: the service with its production server (scripts/serve.sh).
#
# Layers from the least to the most often changed: system packages, then the locked
# dependencies (requirements/service.lock, `make lock`), then the source. A code change
# rebuilds only the last layers; the ~150 MB of wheels stay cached until the lock changes.
# The service runs from its source in /app (PYTHONPATH), as `make run` does: no wheel is
# built, so nothing is fetched at build time that the lock's hashes do not cover.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PYTHONPATH=/app \
    PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MEDIACACHE_VAR_DIR=/var/lib/mediacache

# libmagic for python-magic; a numeric, unprivileged user (uid 10001) so that Kubernetes'
# runAsNonRoot can check it (deploy/k8s/deployment.yaml runs as the same uid).
RUN apt-get update \
 && apt-get install -y --no-install-recommends libmagic1 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 mediacache \
 && useradd --system --uid 10001 --gid 10001 --home /app --shell /usr/sbin/nologin mediacache \
 && mkdir -p /var/lib/mediacache && chown 10001:10001 /var/lib/mediacache

WORKDIR /app

# Dependencies only: every package pinned with its hashes (pip refuses anything else).
COPY requirements/service.lock requirements/service.lock
RUN pip install --require-hashes --no-deps -r requirements/service.lock

# The source (.dockerignore keeps out tests, benchmarks, .env and local state).
COPY . .

# Static files for whitenoise, hashed and gzipped, into STATIC_ROOT (/app/staticfiles).
RUN SECRET_KEY=collectstatic-only python manage.py collectstatic --noinput -v 0

USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s CMD python -c "import urllib.request,os; urllib.request.urlopen(f'http://127.0.0.1:{os.environ.get(\"PORT\",\"8000\")}/healthz', timeout=2)"
CMD ["scripts/serve.sh"]
