"""Real parts for the host project's tests: moto's S3 server and the wrapped ASGI app
under uvicorn. Self-contained on purpose: nothing here imports the Mediacache source
tree, so the engine under test is the installed wheel."""

from __future__ import annotations

import importlib.util
import os
import socket
import sys
import threading
import time
from pathlib import Path

import boto3
import pytest
import uvicorn
from django.test import override_settings

REPO = Path(__file__).resolve().parents[3]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def s3_endpoint():
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    boto3.client(
        "s3", endpoint_url=url, aws_access_key_id="testing",
        aws_secret_access_key="testing", region_name="us-east-1",
    ).create_bucket(Bucket="host-media")  # fmt: skip
    yield url
    server.stop()


@pytest.fixture(scope="session")
def server(s3_endpoint):
    """The host's own asgi.py application, over real HTTP."""
    from django.conf import settings

    storages = {**settings.STORAGES}
    storages["default"] = {
        **storages["default"],
        "OPTIONS": {**storages["default"]["OPTIONS"], "endpoint_url": s3_endpoint},
    }
    override = override_settings(STORAGES=storages)
    override.enable()
    from hostproject.asgi import application

    port = _free_port()
    # The engine's fast-path protocol, from the installed wheel (README, "Add to an
    # existing Django project").
    config = uvicorn.Config(
        application,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        http="mediacache.fastpath:MediaHttpProtocol",
    )
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not uv.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    uv.should_exit = True
    thread.join(timeout=10)
    override.disable()


@pytest.fixture
def live(server, transactional_db, settings):
    settings.PUBLIC_BASE_URL = server
    return server


@pytest.fixture
def evolution_double():
    """The repository's contract-faithful Evolution double, loaded by path (it imports
    only httpx and the standard library)."""
    path = REPO / "tests" / "evolution_double.py"
    spec = importlib.util.spec_from_file_location("evolution_double", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    with module.EvolutionDouble(api_key="host-key", instance="host") as double:
        yield double


os.environ.setdefault("MOTO_RECORDER_FILEPATH", "/tmp/hostproject-moto-recording")
