"""The background tasks, written against Django's Tasks API (``django_tasks`` on Django
5.2, ``django.tasks`` from 6.0), so the backend is a setting (TASKS_BACKEND).

Each task takes ids, never objects, reads the row's state and acts only when the row says
the work is still to be done: running one twice (a re-delivered job, a recovery that
re-enqueued it, a retry racing a resend) does it once. No backend retries a task, so the
retries the delivery rules allow are ours (chat.delivery), enqueued with ``run_after``.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from django.core.management import call_command
from django.db import DatabaseError, transaction

try:  # Django 6.0+
    from django.tasks import task  # type: ignore[import-not-found,unused-ignore]
except ImportError:  # Django 5.2: the backport
    from django_tasks import task

logger = logging.getLogger("chat")


@task()
def send_message(message_id: int) -> str:
    from .delivery import deliver

    return deliver(message_id)


@task()
def process_webhook_event(event_id: int) -> str:
    from .inbound import process_event

    return process_event(event_id)


@task()
def build_variant(attachment_id: int) -> str:
    """The Ogg Opus variant of a large voice note uploaded without one."""
    from .services import build_pending_variant

    return build_pending_variant(attachment_id)


@task()
def fill_waveform(attachment_id: int) -> str:
    """The waveform of a voice note stored as is from its headers (no decode at upload)."""
    from .services import fill_waveform as fill

    return fill(attachment_id)


@task()
def recover_stalled() -> dict[str, int]:
    from .recovery import recover

    return recover()


@task()
def purge_expired_media() -> str:
    """The retention purge (``manage.py purge_expired_media``) as a task."""
    call_command("purge_expired_media")
    return "done"


@task()
def build_media_variants() -> str:
    """The WhatsApp-ready variant backfill (``manage.py build_media_variants``) as a task."""
    call_command("build_media_variants")
    return "done"


def _enqueue(job: Any, *args: Any, run_after: datetime | None = None) -> None:
    if run_after is not None:
        job = job.using(run_after=run_after)
    try:
        job.enqueue(*args)
    except Exception as exc:  # the queue is down: the row stays due, recovery re-enqueues
        logger.error("[CHAT] could not enqueue %s%r: %r", job.name, args, exc)


def enqueue_after_commit(job: Any, *args: Any, run_after: datetime | None = None) -> None:
    """Enqueue with the caller's transaction: in it when the queue is a table of the same
    database (the task row commits with the work's row, one commit, never one without the
    other), else once it commits (a worker must find the row). A lost enqueue loses
    nothing: the row says what is due, and chat.recovery enqueues it again."""
    if _queue_in_default_database() and transaction.get_connection().in_atomic_block:
        try:
            with transaction.atomic():  # a savepoint: a failed enqueue keeps the caller's work
                (job.using(run_after=run_after) if run_after else job).enqueue(*args)
        except DatabaseError as exc:
            logger.error("[CHAT] could not enqueue %s%r: %r", job.name, args, exc)
        return
    transaction.on_commit(lambda: _enqueue(job, *args, run_after=run_after))


def _queue_in_default_database() -> bool:
    from django.conf import settings

    backend = settings.TASKS.get("default", {}).get("BACKEND", "")
    return bool(backend.endswith("DatabaseBackend"))


def enqueue_send(message_id: int, *, run_after: datetime | None = None) -> None:
    enqueue_after_commit(send_message, message_id, run_after=run_after)


def enqueue_event(event_id: int, *, run_after: datetime | None = None) -> None:
    enqueue_after_commit(process_webhook_event, event_id, run_after=run_after)
