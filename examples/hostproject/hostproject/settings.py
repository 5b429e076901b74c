"""An existing backend's settings, plus what Mediacache needs (marked MEDIACACHE)."""

import os

SECRET_KEY = os.environ.get("SECRET_KEY", "host-project-tests-only")
DEBUG = False
ALLOWED_HOSTS = ["*"]
USE_TZ = True
ROOT_URLCONF = "hostproject.urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "mediacache",  # MEDIACACHE: the engine
    "inbox",
]
MIDDLEWARE = ["django.middleware.common.CommonMiddleware"]

_db = os.environ.get("HOST_TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/hostproject")
_user_host, _, _name = _db.removeprefix("postgres://").rpartition("/")
_user, _, _hostport = _user_host.rpartition("@")
_host, _, _port = _hostport.partition(":")
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": _name,
        "USER": _user or "postgres",
        "HOST": _host,
        "PORT": _port or "5432",
    }
}

# The backend's own storage: S3 (the tests point it at their S3 endpoint).
STORAGES = {
    "default": {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": os.environ.get("HOST_S3_BUCKET", "host-media"),
            # Like many backends, objects live under a location (AWS_LOCATION): the
            # engine must find them there (keys, listings, the lifecycle prefix).
            "location": os.environ.get("HOST_S3_LOCATION", "media"),
            "endpoint_url": os.environ.get("HOST_S3_ENDPOINT_URL"),
            "access_key": "testing",
            "secret_key": "testing",
            "region_name": "us-east-1",
            "file_overwrite": True,
        },
    },
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

# MEDIACACHE: where short links point, and which model holds the attachments.
PUBLIC_BASE_URL = os.environ.get("PUBLIC_BASE_URL", "http://127.0.0.1:8000")
MEDIACACHE = {
    "MODEL": "inbox.Attachment",
    "FIELDS": {
        "file": "upload",
        "content_type": "content_type",
        "filename": "name",
        "created_at": "received_at",
        "expires_at": "expires",
        "size": None,  # not stored: read from the store once, then cached
        "sha256": None,
    },
    "REDIS_URL": os.environ.get("HOST_REDIS_URL", "redis://127.0.0.1:6379/10"),
    # The largest attachment this backend takes (its asgi.py limits /inbox/upload to it).
    "MAX_UPLOAD_BYTES": 8 * 1024 * 1024,
    # The engine's readiness (Redis, the store) for the host's probe, under a path of
    # the host's choosing; HEALTH_PATH and METRICS_PATH stay "" (the default): /healthz
    # and /metrics are left to the host (its /metrics view is in urls.py).
    "READY_PATH": "/mediacache/readyz",
}
