"""A real django-tasks-db worker in a thread of the test process, for tests of the
live service (which share the committed test database): the same Worker class that
``manage.py db_worker`` runs, in batch mode (drain, return) in a loop until stopped.

Worker's constructor is its contract here: when it changes, every test using the
fixture fails at once with a TypeError rather than hanging.
"""

from __future__ import annotations

import logging
import threading
import time
from types import TracebackType
from typing import Self

from django.db import connections
from django_tasks_db.management.commands.db_worker import Worker


class ThreadWorker:
    def __init__(self, pause: float = 0.02) -> None:
        self.pause = pause
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="tasks-worker", daemon=True)
        self.errors: list[BaseException] = []

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _loop(self) -> None:
        # Each batch logs its start and end: quiet between the tasks' own lines.
        logging.getLogger("django_tasks_db").setLevel(logging.WARNING)
        try:
            while not self._stop.is_set():
                Worker(
                    queue_names=["*"],
                    interval=0,
                    batch=True,
                    backend_name="default",
                    startup_delay=False,
                    max_tasks=None,
                    worker_id="tests-thread",
                    excluded_queue_names=[],
                ).run()
                time.sleep(self.pause)
        except BaseException as exc:  # shown by the fixture
            self.errors.append(exc)
        finally:
            connections.close_all()
