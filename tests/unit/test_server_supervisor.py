"""config/server.py: uvicorn's supervisor closes its listening socket before it stops
the workers (behaviour under SIGTERM: tests/test_graceful_shutdown.py)."""

from __future__ import annotations

import socket

import pytest

from config import server


def test_install_replaces_uvicorns_supervisor(monkeypatch):
    monkeypatch.setattr(server.uvicorn_main, "Multiprocess", server.Multiprocess)
    assert server.install() is True
    assert server.uvicorn_main.Multiprocess is server.StopListeningFirst


def test_install_warns_and_keeps_uvicorns_own_when_the_name_is_gone(monkeypatch):
    monkeypatch.delattr(server.uvicorn_main, "Multiprocess")
    with pytest.warns(RuntimeWarning, match="new connections will not be refused"):
        assert server.install() is False


def test_terminate_all_closes_the_listening_socket_first():
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    # Not through __init__, which takes over this process's signal handlers.
    supervisor = server.StopListeningFirst.__new__(server.StopListeningFirst)
    supervisor.sockets = [listener]
    supervisor.processes = []
    supervisor.terminate_all()
    assert listener.fileno() == -1
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=1)
