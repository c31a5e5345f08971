"""What a replay could not play: missing or damaged files, each reported once.

A damaged session replays what is there; every hole is one line on
``replay/status`` and in ``edge replay``'s JSON, never an exception. The
players run in threads, so the log is thread-safe.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Gap:
    what: str  # "bus" or "camera/stream"
    path: Path
    reason: str  # one line: "missing", "torn: ...", "damaged: ..."
    start_ns: int | None = None  # the recorded time it held, when the catalog says
    end_ns: int | None = None

    def line(self) -> str:
        span = ""
        if self.start_ns is not None and self.end_ns is not None:
            span = f" ({_iso(self.start_ns)} to {_iso(self.end_ns)})"
        return f"{self.what}: {self.path.name} {self.reason}{span}"

    def json(self) -> dict[str, object]:
        return {"what": self.what, "path": str(self.path), "reason": self.reason,
                "start_ns": self.start_ns, "end_ns": self.end_ns}


def _iso(ns: int) -> str:
    return dt.datetime.fromtimestamp(ns / 1e9).astimezone().isoformat(timespec="seconds")


class GapLog:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._gaps: dict[tuple[str, Path], Gap] = {}

    def add(self, gap: Gap) -> None:
        with self._lock:
            key = (gap.what, gap.path)
            if key in self._gaps:
                return
            self._gaps[key] = gap
        log.warning("replay gap: %s", gap.line())

    def all(self) -> list[Gap]:
        with self._lock:
            return list(self._gaps.values())
