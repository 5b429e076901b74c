"""``manage.py run_worker``: the task worker for TASKS_BACKEND, plus recovery.

It runs the backend's own worker (django-tasks-db's ``db_worker``, or django-rq's
``rqworker`` with the scheduler that ``run_after`` retries need) and, beside it, a thread
that takes back what dead workers and lost enqueues left (chat.recovery) at start and
every WORKER_RECOVERY_INTERVAL seconds. One command for every backend, so the Procfile,
compose.yaml, the Kubernetes manifests and ``make run`` need not know which one is set.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.db import close_old_connections, connections

from mediacache.core.settings import media_settings
from mediacache.media import transcode

logger = logging.getLogger("chat")


class Command(BaseCommand):
    help = "Run the background task worker (sends, webhooks, receipts) with recovery."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--interval",
            type=float,
            default=0.2,
            help="database backend: seconds between polls of an empty queue (default 0.2)",
        )
        parser.add_argument(
            "--batch",
            action="store_true",
            help="run what is queued now, then exit (database backend: --batch; RQ: --burst)",
        )

    def handle(self, *args: Any, interval: float, batch: bool, **options: Any) -> None:
        metrics_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if metrics_dir:  # serve.sh makes it for the web workers; a worker may start first
            os.makedirs(metrics_dir, exist_ok=True)
        stop = threading.Event()
        recovery = threading.Thread(
            target=self._recover_every,
            args=(settings.MESSAGE_DELIVERY["RECOVERY_INTERVAL"], stop),
            name="recovery",
            daemon=True,
        )
        self._recover_once()
        if not batch:
            recovery.start()
            # Inbound media and large voice notes are converted here: none waits for a start.
            transcode.prewarm(media_settings())
        logger.info("[CHAT] worker started (TASKS_BACKEND=%s)", settings.TASKS_BACKEND)
        try:
            if settings.TASKS_BACKEND == "rq":
                call_command(
                    "rqworker",
                    *settings.TASK_QUEUES,
                    job_class="django_tasks_rq.Job",
                    with_scheduler=True,
                    burst=batch,
                )
            else:
                call_command(
                    "db_worker",
                    queue_name=",".join(settings.TASK_QUEUES),
                    interval=interval,
                    batch=batch,
                    reload=False,
                    startup_delay=not batch,
                )
        finally:
            stop.set()

    def _recover_every(self, seconds: float, stop: threading.Event) -> None:
        while not stop.wait(seconds):
            self._recover_once()
        # Inbound media and large voice notes are converted here: no wait for the first.
        transcode.prewarm(media_settings())

    @staticmethod
    def _recover_once() -> None:
        from chat.recovery import recover

        try:
            recover()
        except Exception as exc:  # the database is down: the next round tries again
            logger.error("[CHAT] recovery failed: %r", exc)
        finally:
            if threading.current_thread() is not threading.main_thread():
                connections.close_all()
            else:
                close_old_connections()
