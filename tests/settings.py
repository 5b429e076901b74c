"""Test settings: the real services named by TEST_DATABASE_URL and TEST_REDIS_URL.

The S3 endpoint (moto's server mode) is started by the suite and swapped in by a
session fixture in conftest.py, since its port is known only then.
"""

import os

# A developer's `.env` (written by `make run`) never reaches the tests: every value here
# comes from this file and the TEST_* variables (config.env.READ_DOTENV).
os.environ["MEDIACACHE_READ_DOTENV"] = "0"
os.environ.setdefault("SECRET_KEY", "tests-only-not-secret")
os.environ["DATABASE_URL"] = os.environ.get(
    "TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test"
)
os.environ["REDIS_URL"] = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/9")
os.environ.setdefault("PUBLIC_BASE_URL", "http://127.0.0.1:8000")
os.environ.setdefault("MEDIACACHE_VAR_DIR", "/tmp/mediacache-tests")
os.environ["DATABASE_CONN_MAX_AGE"] = "0"
# Tests publish stats themselves (observability.flusher.flush_now) when they check counts.
os.environ["MEDIA_STATS_INTERVAL"] = "3600"
# The test process starts many servers: freezing would keep each test's garbage.
os.environ["MEDIA_GC_FREEZE"] = "0"
# No conversion worker per started service unless a test asks (tests/unit/test_conversion_pool).
os.environ.setdefault("MEDIA_TRANSCODE_PREWARM", "0")
# Many tests ask for unknown links on purpose; the limiter has its own tests.
os.environ["MEDIA_NOT_FOUND_LIMIT"] = "0"

from config.settings import *  # noqa: F403

ALLOWED_HOSTS = ["*"]
# The suite talks plain HTTP to loopback servers.
SECURE_SSL_REDIRECT = False
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = False
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# The suite runs no collectstatic: the apps' static files from their own folders, plain
# names (tests/test_static_and_logs.py checks the production storage under serve.sh).
STORAGES = {
    **STORAGES,  # noqa: F405
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True
STATIC_ROOT = None  # nothing collected (whitenoise would warn that the directory is missing)
# A send that fails in a retryable way fails at once (as before the queue) unless a test
# gives it a deadline; retries and leases are short where a test does.
MESSAGE_DELIVERY = {
    **MESSAGE_DELIVERY,  # noqa: F405
    "SEND_DEADLINE": 0.0,
    "RETRY_BASE": 0.2,
    "RETRY_MAX": 1.0,
    "LEASE_MARGIN": 2.0,
}
# Every variant before the upload's answer, as the conversion tests expect; the background
# path has its own test (tests/test_background_variant.py), which sets a threshold.
VOICE_BACKGROUND_BYTES = 0
