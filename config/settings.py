"""Settings for Mediacache, read from the environment (12-factor), then from `.env`.

Every knob the service has is here, with its default; the README's configuration
table mirrors this file. Unset S3_BUCKET means a local directory store, unset
REDIS_URL means the in-process cache only, unset DATABASE_URL means SQLite: the
embedded defaults that `make run` uses.
"""

from __future__ import annotations

from pathlib import Path

import botocore.config
import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from config import logconfig
from config.env import SettingsEnv
from mediacache.core.settings import MediaSettings

BASE_DIR = Path(__file__).resolve().parent.parent
# Real environment variables first, then `.env` at the repository root (`make run` writes a
# development one); MEDIACACHE_READ_DOTENV=0 skips it (tests/settings.py sets that).
env = SettingsEnv()
env.read_dotenv(BASE_DIR / ".env")
VAR_DIR = env.path("MEDIACACHE_VAR_DIR", BASE_DIR / "var")


# --- Django core -----------------------------------------------------------------

DEBUG = env.bool("DEBUG", False)
SECRET_KEY = env.str("SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off")
    SECRET_KEY = "dev-only-insecure-key-do-not-use-in-production"  # noqa: S105
ALLOWED_HOSTS = env.names("ALLOWED_HOSTS", ["127.0.0.1", "localhost"] if DEBUG else [])

# --- HTTPS behind a proxy (python manage.py check --deploy) -------------------------
# The proxy or PaaS router terminates TLS and says so in X-Forwarded-Proto.
if env.bool("TRUST_X_FORWARDED_PROTO", not DEBUG):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", not DEBUG)
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", not DEBUG)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", not DEBUG)
CSRF_TRUSTED_ORIGINS = env.names("CSRF_TRUSTED_ORIGINS", [])
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", 0 if DEBUG else 3600)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", False)
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

# --- Background tasks (Django's Tasks API; README "Background work") -----------------
# Sends, re-sends, inbound media and receipts run in a worker (`manage.py run_worker`):
# TASKS_BACKEND=database (the default: a table in DATABASE_URL, no other server) or rq (RQ
# on TASKS_REDIS_URL, default REDIS_URL: several workers beyond one machine).
TASKS_BACKEND = env.str("TASKS_BACKEND", "database").lower()
TASK_QUEUES = ["default"]
if TASKS_BACKEND == "database":
    TASK_APPS = ["django_tasks", "django_tasks_db"]
    TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": TASK_QUEUES}}
elif TASKS_BACKEND == "rq":
    _tasks_redis = env.str("TASKS_REDIS_URL") or env.str("REDIS_URL")
    if not _tasks_redis:
        raise ImproperlyConfigured("TASKS_BACKEND=rq needs TASKS_REDIS_URL or REDIS_URL")
    TASK_APPS = ["django_tasks", "django_rq", "django_tasks_rq"]
    TASKS = {"default": {"BACKEND": "django_tasks_rq.RQBackend", "QUEUES": TASK_QUEUES}}
    RQ_QUEUES = {name: {"URL": _tasks_redis} for name in TASK_QUEUES}
else:
    raise ImproperlyConfigured(f"TASKS_BACKEND must be database or rq, got {TASKS_BACKEND!r}")
# How sends are retried (chat.delivery): only failures that cannot have sent the message
# (connection refused, connect timeout, 502/503/504, instance not connected), with
# exponential backoff and full jitter from MESSAGE_RETRY_BASE up to MESSAGE_RETRY_MAX
# seconds, until MESSAGE_SEND_DEADLINE seconds after the message was queued.
MESSAGE_DELIVERY = {
    "SEND_DEADLINE": env.float("MESSAGE_SEND_DEADLINE", 900.0),
    "RETRY_BASE": env.float("MESSAGE_RETRY_BASE", 2.0),
    "RETRY_MAX": env.float("MESSAGE_RETRY_MAX", 60.0),
    # A worker's claim on a message lasts the Evolution timeouts plus this margin; after
    # it, chat.recovery decides (queued again if the request never started, else unknown).
    "LEASE_MARGIN": env.float("MESSAGE_LEASE_MARGIN", 30.0),
    # How often a worker looks for work a dead worker or a lost enqueue left behind.
    "RECOVERY_INTERVAL": env.float("WORKER_RECOVERY_INTERVAL", 30.0),
}

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    # django-ninja's templates and static files: /api/docs loads Swagger UI from
    # here, not from a CDN (it works offline).
    "ninja",
    *TASK_APPS,
    "mediacache",
    "chat",
    "ops",
]

MIDDLEWARE = [
    # First: every response (redirects too) and every log line of the request get its id.
    "config.requestid.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Static files (admin, /ops/, /api/docs' Swagger UI) by whitenoise, before sessions.
    "config.staticfiles.AsyncWhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
DEFAULT_EXCEPTION_REPORTER_FILTER = "config.reporting.RedactingExceptionReporterFilter"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# Under ASGI each request's sync code runs in a thread of its own, so persistent connections
# (CONN_MAX_AGE > 0) leave one idle connection per thread that ever ran a query. PostgreSQL
# gets psycopg's pool instead: at most DATABASE_POOL_MAX connections per process (a worker),
# a request waits up to DATABASE_POOL_TIMEOUT for one, and the connections above
# DATABASE_POOL_MIN are closed once idle (one per DATABASE_POOL_MAX_IDLE seconds).
# DATABASE_POOL_MAX=0: no pool (behind PgBouncer), DATABASE_CONN_MAX_AGE then applies.
DATABASES = {
    "default": dj_database_url.parse(
        env.str("DATABASE_URL") or f"sqlite:///{VAR_DIR / 'db.sqlite3'}",
        conn_max_age=env.int("DATABASE_CONN_MAX_AGE", 0),
        conn_health_checks=True,
    )
}
DATABASE_POOL = {
    "min_size": env.int("DATABASE_POOL_MIN", 1),
    "max_size": env.int("DATABASE_POOL_MAX", 5),
    "max_idle": env.float("DATABASE_POOL_MAX_IDLE", 10.0),
    "timeout": env.float("DATABASE_POOL_TIMEOUT", 30.0),
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and DATABASE_POOL["max_size"]:
    if not 0 <= DATABASE_POOL["min_size"] <= DATABASE_POOL["max_size"]:
        raise ImproperlyConfigured(
            f"DATABASE_POOL_MIN must be between 0 and DATABASE_POOL_MAX, got "
            f"{DATABASE_POOL['min_size']} and {DATABASE_POOL['max_size']}"
        )
    if DATABASE_POOL["max_idle"] <= 0 or DATABASE_POOL["timeout"] <= 0:
        raise ImproperlyConfigured("DATABASE_POOL_MAX_IDLE and DATABASE_POOL_TIMEOUT must be > 0")
    if DATABASES["default"]["CONN_MAX_AGE"] != 0:
        raise ImproperlyConfigured(
            f"DATABASE_CONN_MAX_AGE={DATABASES['default']['CONN_MAX_AGE']} keeps connections "
            "open, which psycopg's pool refuses: unset it, or set DATABASE_POOL_MAX=0 to run "
            "without the pool"
        )
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = DATABASE_POOL
    # Django's backend, with a pool that fails waiting requests at once when PostgreSQL is
    # down (503, as without a pool) instead of after DATABASE_POOL_TIMEOUT.
    DATABASES["default"]["ENGINE"] = "config.postgresql"
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The web server and the task worker write to one file: WAL lets readers go on while
    # one writes, IMMEDIATE takes the write lock at BEGIN (no lock-upgrade deadlock), and a
    # writer waits up to 20 s for the other instead of failing with "database is locked".
    # synchronous=NORMAL is WAL's usual pairing: a commit survives the process's crash, and
    # only an OS crash or power loss may take back the last ones (PostgreSQL in production).
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
# `manage.py collectstatic` writes here (the image does at build): beside the code, not
# under MEDIACACHE_VAR_DIR, which a volume may cover. whitenoise serves it: hashed
# names cached for a year (immutable), gzip. With DEBUG (`make run`) the apps' own
# folders are served instead, read again on every request: no collectstatic step.
STATIC_ROOT = env.path("STATIC_ROOT", BASE_DIR / "staticfiles")

# --- Object store ----------------------------------------------------------------
# S3 (MinIO or AWS) through django-storages when S3_BUCKET is set; a local
# directory otherwise. Attachments live under MEDIA_KEY_PREFIX, the prefix the
# bucket's lifecycle rule covers.

S3_BUCKET = env.str("S3_BUCKET")
MEDIA_ROOT = env.str("MEDIA_ROOT") or str(VAR_DIR / "media")
if S3_BUCKET:
    DEFAULT_STORAGE = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": S3_BUCKET,
            "endpoint_url": env.str("S3_ENDPOINT_URL") or None,
            "access_key": env.str("S3_ACCESS_KEY_ID") or None,
            "secret_key": env.str("S3_SECRET_ACCESS_KEY") or None,
            "region_name": env.str("S3_REGION") or None,
            "default_acl": None,
            "querystring_auth": True,
            "file_overwrite": False,
            # Bounded waits: a hung endpoint costs a request S3_READ_TIMEOUT per
            # attempt, not botocore's 60 s; the pool covers every store thread
            # plus the request threads that upload.
            "client_config": botocore.config.Config(
                s3={"addressing_style": env.str("S3_ADDRESSING_STYLE") or None},
                connect_timeout=env.float("S3_CONNECT_TIMEOUT", 3.0),
                read_timeout=env.float("S3_READ_TIMEOUT", 10.0),
                retries={"total_max_attempts": env.int("S3_MAX_ATTEMPTS", 3), "mode": "standard"},
                max_pool_connections=env.int("S3_MAX_POOL_CONNECTIONS", 50),
            ),
        },
    }
else:
    DEFAULT_STORAGE = {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": MEDIA_ROOT},
    }
STORAGES = {
    "default": DEFAULT_STORAGE,
    # Hashed names and .gz from collectstatic (STATIC_ROOT); plain names with DEBUG.
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}

# --- Mediacache ------------------------------------------------------------------

PUBLIC_BASE_URL = env.str("PUBLIC_BASE_URL", "http://127.0.0.1:8000").rstrip("/")
REDIS_URL = env.str("REDIS_URL")
# Sentinel and Cluster (README, "Redis topologies"): read under their own names, not MEDIA_*.
_REDIS_NAMES = (
    "REDIS_SENTINELS", "REDIS_SENTINEL_MASTER", "REDIS_CLUSTER_NODES", "REDIS_USERNAME",
    "REDIS_PASSWORD", "REDIS_SENTINEL_USERNAME", "REDIS_SENTINEL_PASSWORD", "REDIS_DB",
    "REDIS_TLS", "REDIS_TLS_CA_FILE", "REDIS_TLS_CERT_FILE", "REDIS_TLS_KEY_FILE",
)  # fmt: skip

# Every engine setting (mediacache.MediaSettings: its keys, types and defaults) comes from
# MEDIA_<KEY>, read by config.env.media_settings; only the names and the defaults where
# the service differs from a host project are written here.
MEDIACACHE = env.media_settings(
    MediaSettings,
    fixed={"MODEL": "chat.MessageAttachment", "REDIS_URL": REDIS_URL},
    names={
        # /metrics: this bearer token, or (unset) a direct loopback peer with no
        # forwarding headers.
        "METRICS_TOKEN": "METRICS_TOKEN",
        # Proxies whose X-Forwarded-For is believed (CIDRs; scripts/serve.sh gives uvicorn
        # the same list): the client is the rightmost address not in them.
        "TRUSTED_PROXIES": "TRUSTED_PROXIES",
        **{name: name for name in _REDIS_NAMES},
    },
    defaults={
        # The service's workers freeze their start-up objects out of the collector
        # (the engine's default is off, for host projects).
        "GC_FREEZE": True,
        # One conversion worker started with each web and task-worker process, so the
        # first upload after a start does not wait for one (the engine's default is 0).
        "TRANSCODE_PREWARM": 1,
        # Answered before Django (the engine's defaults are "": left to a host project).
        "HEALTH_PATH": "/healthz",
        "READY_PATH": "/readyz",
        "METRICS_PATH": "/metrics",
    },
)

# --- Evolution API (WhatsApp gateway) ---------------------------------------------

EVOLUTION = {
    "API_URL": env.str("EVOLUTION_API_URL").rstrip("/"),
    "API_KEY": env.str("EVOLUTION_API_KEY"),
    "INSTANCE": env.str("EVOLUTION_INSTANCE"),
    "API_VERSION": env.int("EVOLUTION_API_VERSION", 2),
    "CONNECT_TIMEOUT": env.float("EVOLUTION_CONNECT_TIMEOUT", 5.0),
    "READ_TIMEOUT": env.float("EVOLUTION_READ_TIMEOUT", 60.0),
    "MAX_RETRIES": env.int("EVOLUTION_MAX_RETRIES", 2),
    # sendWhatsAppAudio's ``encoding`` for voice notes with a ready Ogg Opus variant:
    # off (false) lets Evolution skip its ffmpeg run and its ?timestamp= append.
    "AUDIO_ENCODING": env.bool("EVOLUTION_AUDIO_ENCODING", False),
    # Shared secret of the inbound webhook (header X-Webhook-Secret or the URL path).
    "WEBHOOK_SECRET": env.str("EVOLUTION_WEBHOOK_SECRET"),
}

# Voice notes uploaded through the API above this size are stored as they came and
# answered at once; a worker makes their Ogg Opus variant (a send waits for it). 0: every
# variant is made before the upload's answer.
VOICE_BACKGROUND_BYTES = env.int("VOICE_BACKGROUND_BYTES", 16 * 1024 * 1024)

# POST /api/attachments/ is taken in before Django while the body arrives (chat.streaming:
# the bytes reach the store as they come); off: Django's view reads the whole body first.
STREAMING_UPLOADS = env.bool("STREAMING_UPLOADS", True)
# Uploads: small ones stay in memory, larger ones spool to disk while streaming.
FILE_UPLOAD_MAX_MEMORY_SIZE = 2_621_440
FILE_UPLOAD_HANDLERS = [
    "chat.uploads.HashingLimitedUploadHandler",  # size limit + SHA-256 while streaming
    "django.core.files.uploadhandler.MemoryFileUploadHandler",
    "django.core.files.uploadhandler.TemporaryFileUploadHandler",
]
# Bodies read into memory (the webhook's JSON with base64 media): 413 above this.
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("WEBHOOK_MAX_BYTES", 24 * 1024 * 1024)

# --- Logging ---------------------------------------------------------------------

LOG_LEVEL = env.str("LOG_LEVEL", "INFO").upper()
LOG_FORMAT = env.str("LOG_FORMAT", "text").lower()  # text | json
if LOG_FORMAT not in {"text", "json"}:
    raise ImproperlyConfigured(f"LOG_FORMAT must be text or json, got {LOG_FORMAT!r}")
# One root handler for every logger, uvicorn's included (config.logconfig; scripts/serve.sh
# hands the same to uvicorn); each line of a Django request carries its request_id.
LOGGING = logconfig.build(LOG_LEVEL, LOG_FORMAT)
LOGGING_CONFIG = "config.logconfig.configure"  # dictConfig, and warnings as log lines
