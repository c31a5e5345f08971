"""Structured logs: human lines on a terminal, one JSON object a line elsewhere.

Under systemd (``$JOURNAL_STREAM`` set) each line starts with ``<N>``, the
syslog priority journald reads, so levels survive into the journal.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import Any

_PRIORITY = {"DEBUG": 7, "INFO": 6, "WARNING": 4, "ERROR": 3, "CRITICAL": 2}
_STD_ATTRS = set(vars(logging.makeLogRecord({})))


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str, journald: bool) -> None:
        super().__init__()
        self.service = service
        self.journald = journald

    def format(self, record: logging.LogRecord) -> str:
        obj: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STD_ATTRS and not key.startswith("_"):
                obj[key] = value
        if record.exc_info:
            obj["exc"] = self.formatException(record.exc_info)
        line = json.dumps(obj, default=str)
        return f"<{_PRIORITY.get(record.levelname, 6)}>{line}" if self.journald else line


class TerminalFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        t = time.strftime("%H:%M:%S", time.localtime(record.created))
        line = f"{t} {record.levelname[0]} {self.service}: {record.getMessage()}"
        if record.exc_info and record.levelno >= logging.ERROR:
            line += "\n" + self.formatException(record.exc_info)
        return line


def setup_logging(service: str, level: str | None = None, force_json: bool | None = None) -> None:
    as_json = (not sys.stderr.isatty()) if force_json is None else force_json
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter(service, journald=bool(os.environ.get("JOURNAL_STREAM")))
        if as_json
        else TerminalFormatter(service)
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level or os.environ.get("EDGE_LOG_LEVEL", "INFO").upper())
