"""The service's logging configuration: one for Django's loggers and for uvicorn's.

``config.settings`` sets ``LOGGING = build(LOG_LEVEL, LOG_FORMAT)``. uvicorn configures
its own loggers (own text handlers) in every process before Django's settings exist,
and its supervisor process never loads Django at all; so ``scripts/serve.sh`` runs
``python -m config.logconfig``, which writes the same configuration as a JSON file for
``uvicorn --log-config`` and prints its path. Every logger then goes through one root
handler: with ``LOG_FORMAT=json`` each line, uvicorn's start-up and errors included, is
one JSON object, and a line made during a Django request carries its ``request_id``.
"""

from __future__ import annotations

import hashlib
import json
import logging.config
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

FORMATS = {
    "text": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
    "json": {"()": "mediacache.observability.logformat.JsonFormatter"},
}


def build(level: str, log_format: str) -> dict[str, Any]:
    """Django's ``LOGGING``: everything to one stream handler in ``log_format``."""
    quieter = "INFO" if level == "DEBUG" else level
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {log_format: FORMATS[log_format]},
        "filters": {"request_id": {"()": "config.requestid.RequestIdFilter"}},
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "formatter": log_format,
                "filters": ["request_id"],
            },
        },
        "root": {"handlers": ["console"], "level": level},
        "loggers": {
            "django": {"level": quieter, "propagate": True},
            # uvicorn's start-up and errors. Its own configuration gives "uvicorn" a text
            # handler; naming "uvicorn" here would also reset "uvicorn.access" (dictConfig
            # does that to the children of a logger it configures), undoing --no-access-log.
            "uvicorn.error": {"handlers": ["console"], "level": quieter, "propagate": False},
            "botocore": {"level": "WARNING"},
            "boto3": {"level": "WARNING"},
            "urllib3": {"level": "WARNING"},
        },
    }


def configure(logging_config: dict[str, Any]) -> None:
    """Django's ``LOGGING_CONFIG``: ``dictConfig``, and Python's warnings (Django's own,
    whitenoise's) as log lines of ``py.warnings``, not bare text on stderr."""
    logging.config.dictConfig(logging_config)
    logging.captureWarnings(True)


def for_uvicorn(logging_config: dict[str, Any]) -> dict[str, Any]:
    """The same, with uvicorn's other loggers (the access log when it is on) through the
    root handler instead of uvicorn's. Not in Django's ``LOGGING``: applied in a worker
    after uvicorn has honoured ``--no-access-log``, it would turn the access log back on."""
    loggers = {
        **logging_config["loggers"],
        "uvicorn": {"handlers": [], "propagate": True},
        "uvicorn.access": {"handlers": [], "propagate": True},
    }
    return {**logging_config, "loggers": loggers}


def write(logging_config: dict[str, Any], directory: Path | None = None) -> Path:
    """A JSON file uvicorn can read (it tells the format by the ``.json`` suffix). It
    must outlive the start-up (uvicorn's workers read it again when they start), so it is
    named by its content in a directory of this user's: each start reuses it, servers
    with other settings get their own, and nothing piles up."""
    directory = directory or Path(tempfile.gettempdir()) / f"mediacache-logging-{os.getuid()}"
    directory.mkdir(mode=0o700, exist_ok=True)
    status = directory.stat()
    if status.st_uid != os.getuid() or status.st_mode & 0o077:
        # A log configuration names classes to instantiate: nobody else may write it.
        raise PermissionError(f"{directory} must belong to this user alone (mode 700)")
    text = json.dumps(for_uvicorn(logging_config), sort_keys=True)
    path = directory / f"{hashlib.sha256(text.encode()).hexdigest()[:16]}.json"
    if not path.exists():
        fd, partial = tempfile.mkstemp(dir=directory, suffix=".partial")
        with os.fdopen(fd, "w") as file:
            file.write(text)
        os.replace(partial, path)  # whole or absent, if two servers start at once
    return path


def main() -> None:
    """Print the path of uvicorn's log configuration, made from the settings' LOGGING
    (so ``.env`` and the environment count as they do for the service)."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    from django.conf import settings

    print(write(settings.LOGGING))


if __name__ == "__main__":
    sys.exit(main())
