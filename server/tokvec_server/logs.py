"""The server's log lines: plain text for a terminal, or one JSON object per line for a log
pipeline (``log_format = "json"``), where a field can be searched without parsing prose.

A JSON line holds ``ts`` (UTC, ISO 8601), ``level``, ``logger``, ``message``, any ``extra`` fields
the call gave (``error_id`` on every unexpected error, so that the id a caller quotes finds its
traceback), and ``exc`` with the traceback when there is one. Nothing a caller sent is logged
beyond a doc id cut to 64 characters, and never a token."""

from __future__ import annotations

import datetime
import json
import logging
import sys

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
# What every LogRecord has: anything else on a record came from ``extra``.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "ts": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def configure(log_format: str) -> None:
    """Log INFO and up to stderr in ``log_format`` (text | json)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
