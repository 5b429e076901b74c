"""``python -m config.server``: uvicorn's command line, whose supervisor stops listening
as soon as it is told to stop (``scripts/serve.sh`` runs the service with it).

With more than one worker, uvicorn's supervisor binds the listening socket and keeps
its copy open until every worker has finished its graceful shutdown. The workers close
theirs at SIGTERM, but the supervisor's keeps the socket listening: for up to
``GRACEFUL_TIMEOUT`` the kernel accepts new connections that no worker will ever read,
and they hang until the supervisor exits and resets them. Closing the supervisor's copy
too, before it signals the workers, makes a new connection refused at once, which a
load balancer or client retries elsewhere right away; requests in flight finish as
before (measured in tests/test_graceful_shutdown.py).
"""

from __future__ import annotations

import importlib
import sys
import warnings

from uvicorn.supervisors.multiprocess import Multiprocess

# The module, not the ``uvicorn.main`` function the package exports under the same name.
uvicorn_main = importlib.import_module("uvicorn.main")


class StopListeningFirst(Multiprocess):
    """uvicorn's supervisor, closing its listening sockets before stopping the workers."""

    def terminate_all(self) -> None:
        for sock in self.sockets:
            sock.close()
        super().terminate_all()


def install() -> bool:
    """Make uvicorn's command line use :class:`StopListeningFirst`; False (with a warning)
    if this uvicorn no longer has the names it replaces, which leaves its own supervisor."""
    if not (
        getattr(uvicorn_main, "Multiprocess", None) is Multiprocess
        and callable(getattr(Multiprocess, "terminate_all", None))
    ):
        warnings.warn(
            "config.server: uvicorn.main.Multiprocess.terminate_all not found; new "
            "connections will not be refused during a graceful shutdown",
            RuntimeWarning,
            stacklevel=2,
        )
        return False
    uvicorn_main.Multiprocess = StopListeningFirst  # type: ignore[attr-defined]
    return True


if __name__ == "__main__":
    install()
    sys.exit(uvicorn_main.main(prog_name="uvicorn"))
