"""A drone link's `.tlog`s, written on a thread of their own (file I/O never on the event loop).

The drone service sees every raw frame: those heard on the link (before any
filtering, badly signed ones too) and those it sends (its heartbeats and
commands, and what its router forwards from ground stations), as MAVProxy
logs both directions. It hands each to :meth:`TlogThread.frame`, which only
queues it with the time it was seen; the thread writes them with
:class:`~edge.recorder.tlog.TlogWriter`.

Files: ``<directory>/<UTC start as 20261201T184800Z>.tlog``, a new one every
``rotate_s`` (an hour by default) and at each start, so a crash costs one
file's last half second, not the link's history. A write error (disk full) is
logged once and counted; frames are dropped (counted) until a new file opens,
tried again every :data:`RETRY_S`. A queue beyond :data:`MAX_QUEUED` frames
(a stalled disk) drops frames for the log alone, never slows the link.
"""

from __future__ import annotations

import datetime as dt
import logging
import queue
import threading
import time
from pathlib import Path

from edge.recorder.tlog import TlogError, TlogWriter

log = logging.getLogger(__name__)

RETRY_S = 5.0
MAX_QUEUED = 20_000  # ~10 s of four drones' telemetry at 50 Hz
_STOP = object()


def tlog_name(time_ns: int) -> str:
    stamp = dt.datetime.fromtimestamp(time_ns / 1e9, dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}.tlog"


class TlogThread:
    def __init__(self, directory: Path, rotate_s: float = 3600.0, name: str = "tlog") -> None:
        self.directory = directory
        self.rotate_s = rotate_s
        self.frames = 0
        self.dropped = 0
        self.errors = 0
        self.last_error = ""
        self.files: list[Path] = []
        self._queue: queue.SimpleQueue[tuple[bytes, int] | object] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def frame(self, raw: bytes) -> None:
        """Queue one raw frame, seen now (any thread; cheap)."""
        if self._queue.qsize() >= MAX_QUEUED:
            self.dropped += 1
            return
        self._queue.put((raw, time.time_ns()))

    def stop(self, timeout: float = 5.0) -> None:
        """Write what is queued, close (fsync) the file, end the thread. Blocking."""
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join(timeout)

    def _run(self) -> None:
        writer: TlogWriter | None = None
        opened_at = 0.0
        retry_at = 0.0
        try:
            while True:
                try:
                    item = self._queue.get(timeout=0.25)
                except queue.Empty:
                    item = None
                if item is _STOP:
                    return
                now = time.monotonic()
                if writer is not None and now - opened_at >= self.rotate_s:
                    self._close(writer)
                    writer = None
                if writer is None and now >= retry_at:
                    writer = self._open()
                    opened_at = now
                    retry_at = now + RETRY_S
                if writer is None:
                    self.dropped += item is not None
                    continue
                try:
                    if isinstance(item, tuple):
                        writer.write(item[0], item[1])
                        self.frames += 1
                    else:
                        writer.poll()
                except ValueError:
                    self.dropped += 1  # not one whole frame: the parser's bug, not the disk's
                except (OSError, TlogError) as e:
                    self._failed(e)
                    self._close(writer)
                    writer = None
        finally:
            if writer is not None:
                self._close(writer)

    def _open(self) -> TlogWriter | None:
        path = self.directory / tlog_name(time.time_ns())
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            writer = TlogWriter(path, append=path.exists())
        except (OSError, TlogError) as e:
            self._failed(e)
            return None
        self.files.append(path)
        return writer

    def _close(self, writer: TlogWriter) -> None:
        try:
            writer.close()
        except (OSError, TlogError) as e:
            self._failed(e)

    def _failed(self, e: Exception) -> None:
        self.errors += 1
        text = str(e)
        if text != self.last_error:
            log.error("MAVLink log in %s: %s", self.directory, text)
        self.last_error = text
