"""Fixtures: real PostgreSQL and Redis (from the environment), moto's S3 over HTTP,
and the service itself under uvicorn on a loopback port."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import boto3
import httpx
import pytest
import redis
from django.conf import settings as django_settings
from django.test import override_settings

from tests.evolution_double import EvolutionDouble
from tests.servers import RunningServer, S3Server, serve_asgi
from tests.tasks_worker import ThreadWorker

# moto's request recorder writes to this file (default: ./moto_recording).
os.environ.setdefault("MOTO_RECORDER_FILEPATH", "/tmp/mediacache-tests-moto-recording")

FIXTURES = Path(__file__).parent / "fixtures"
BUCKET = "mediacache-test"
S3_KEY_ID = "testing"
S3_SECRET = "testing"


def pytest_sessionstart(session: pytest.Session) -> None:
    """The suite needs its real services: say how to get them instead of skipping."""
    import psycopg

    problems = []
    db = django_settings.DATABASES["default"]
    try:
        psycopg.connect(
            host=db["HOST"], port=db["PORT"] or 5432, user=db["USER"],
            password=db["PASSWORD"] or None, dbname="postgres", connect_timeout=3,
        ).close()  # fmt: skip
    except Exception as exc:
        problems.append(f"PostgreSQL at {db['HOST']}:{db['PORT']} ({exc})")
    try:
        redis.Redis.from_url(django_settings.REDIS_URL, socket_connect_timeout=3).ping()
    except Exception as exc:
        problems.append(f"Redis at {django_settings.REDIS_URL} ({exc})")
    if problems:
        pytest.exit(
            "The tests need real services, and these do not answer: "
            + "; ".join(problems)
            + ". Run `make test` (it starts them where it can), or point "
            "TEST_DATABASE_URL / TEST_REDIS_URL at running ones.",
            returncode=3,
        )


def s3_storage_settings(endpoint: str, bucket: str = BUCKET) -> dict:
    return {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": bucket,
            "endpoint_url": endpoint,
            "access_key": S3_KEY_ID,
            "secret_key": S3_SECRET,
            "region_name": "us-east-1",
            "default_acl": None,
            "file_overwrite": True,
        },
    }


def s3_client(endpoint: str):
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=S3_KEY_ID,
        aws_secret_access_key=S3_SECRET,
        region_name="us-east-1",
    )


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    server = S3Server().start()
    yield server
    server.stop()


@pytest.fixture(scope="session", autouse=True)
def _s3_storage(s3_server: S3Server) -> Iterator[None]:
    """Every test stores attachments in the S3 endpoint, as production does."""
    from mediacache.engine import reset_engine

    s3_client(s3_server.url).create_bucket(Bucket=BUCKET)
    storages = {**django_settings.STORAGES, "default": s3_storage_settings(s3_server.url)}
    override = override_settings(STORAGES=storages, S3_BUCKET=BUCKET)
    override.enable()
    reset_engine()
    yield
    override.disable()
    reset_engine()


@pytest.fixture
def s3(s3_server: S3Server):
    return s3_client(s3_server.url)


@pytest.fixture(scope="session")
def live_server_session(_s3_storage) -> Iterator[RunningServer]:
    from config.asgi import build_application

    with serve_asgi(build_application()) as server:
        yield server


@pytest.fixture
def redis_client() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(django_settings.REDIS_URL)
    client.flushdb()
    yield client
    client.close()


def empty_bucket(client, bucket: str = BUCKET) -> None:
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for item in page.get("Contents", []):
            client.delete_object(Bucket=bucket, Key=item["Key"])


@pytest.fixture
def live(live_server_session, transactional_db, settings, redis_client, s3) -> RunningServer:
    """The running service, with short URLs pointing at it, empty caches and bucket."""
    from mediacache.engine import get_engine

    settings.PUBLIC_BASE_URL = live_server_session.url
    get_engine().l1.clear()
    empty_bucket(s3)
    return live_server_session


@pytest.fixture
def api_key(transactional_db) -> str:
    from chat.models import ApiKey

    return ApiKey.issue("tests")[1]


@pytest.fixture
def api(live: RunningServer, api_key: str) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=live.url, headers={"Authorization": f"Bearer {api_key}"}, timeout=30
    ) as client:
        yield client


@pytest.fixture
def evolution(settings) -> Iterator[EvolutionDouble]:
    """The Evolution API double (tests/evolution_double.py), configured as the gateway."""
    with EvolutionDouble(api_key="evo-secret", instance="mc-test") as double:
        settings.EVOLUTION = {
            **settings.EVOLUTION,
            "API_URL": double.url,
            "API_KEY": "evo-secret",
            "INSTANCE": "mc-test",
            "MAX_RETRIES": 2,
        }
        yield double


@pytest.fixture
def tasks_worker(transactional_db) -> Iterator[ThreadWorker]:
    """A task worker (django-tasks-db's, in a thread) for tests that send or take webhooks."""
    with ThreadWorker() as worker:
        yield worker
    assert not worker.errors, worker.errors


@pytest.fixture
def voice_note() -> bytes:
    return (FIXTURES / "voice.ogg").read_bytes()


def upload(api: httpx.Client, body: bytes, name: str = "file.bin") -> dict:
    response = api.post("/api/attachments/", files={"file": (name, body)})
    assert response.status_code == 201, response.text
    return response.json()
