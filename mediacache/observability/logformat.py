"""One JSON object per log line (``LOG_FORMAT=json``), for log pipelines.

Fields given with ``extra=`` (hash, tier, status, bytes, duration_ms …) become
top-level keys, as does a Django request's ``request_id`` (the service's log filter
adds it); the message keeps the familiar ``[MEDIA CACHE] HIT`` tags. A traceback is
one escaped string (``exc``): one line per event.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

# Not copied: the record's own attributes, and uvicorn's ``color_message`` (the message
# again, with terminal colours).
_STANDARD = frozenset(
    logging.LogRecord("", 0, "", 0, "", (), None).__dict__.keys()
    | {"message", "asctime", "color_message"}
)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                payload[key] = value
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str, ensure_ascii=False)
