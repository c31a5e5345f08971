"""One camera stream recorded: a thread that owns the stream's media-plane subscriber.

The thread takes units in batches (one wake-up per batch, never a hop through an
event loop) and feeds a :class:`~edge.recorder.mp4_segment.SegmentWriter`. Its
socket holds :data:`QUEUE_UNITS` units; beyond that (the disk is slower than the
camera) the camera's publisher drops units for the recorder alone, which sees a
sequence gap, counts it and resumes at the next keyframe: a gap between segments,
never a broken file, and neither the camera nor the bus waits. Every segment the
writer closes is registered in the catalog from the thread.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import zmq

from edge.bus.messages import RecorderStream, RecorderStreamState
from edge.media.subscriber import MediaSubscriber
from edge.recorder.catalog import Catalog
from edge.recorder.layout import VIDEO_DIR
from edge.recorder.mp4_segment import (
    RecordingWriteError,
    SegmentInfo,
    SegmentWriter,
)
from edge.recorder.recovery import one_line

log = logging.getLogger(__name__)

# Units a stream's socket holds for its writer thread: about 8 s at 30 fps, room for a
# disk that stalls for a few seconds before the recorder loses anything.
QUEUE_UNITS = 256
# The writer thread's wait for a unit: also how often a stopped camera's last segment is
# checked for closing (`close_if_idle`).
WRITER_WAKE_S = 0.25
# A camera silent this long ends its segment (the next unit starts a new one at a keyframe).
MAX_GAP_S = 2.0
# How long stopping may wait for a writer thread to finish its file (the runner's grace is 4 s).
JOIN_S = 3.0


class RecorderHost(Protocol):
    """What a stream's or the bus's recorder needs of the service that runs it."""

    root: Path
    segment_seconds: float
    catalog: Catalog
    zmq_ctx: zmq.Context[zmq.Socket[bytes]]  # the process's, for the threads' sockets
    bus_endpoint: str  # where the broker fans messages out

    def note_error(self, text: str) -> None: ...

    def disk_full_seen(self) -> None: ...


class StreamRecorder:
    """One camera stream: a writer thread that owns the stream's subscriber."""

    def __init__(self, service: RecorderHost, camera: str, profile: str,
                 endpoint: str) -> None:
        self.service = service
        self.camera = camera
        self.profile = profile
        self.endpoint = endpoint  # set by the loop (`follow`), read by the thread
        seconds = service.segment_seconds
        self.writer = SegmentWriter(service.root / VIDEO_DIR, camera, profile,
                                    segment_seconds=seconds,
                                    fragment_seconds=min(1.0, seconds),
                                    max_gap_seconds=MAX_GAP_S, on_segment=self._closed)
        self.dropped_before = 0  # units lost by subscribers since replaced (thread only)
        self.errors = 0  # written by the writer thread only
        self.last_error = ""
        self.failing = False  # the last write failed and no unit was written since
        self.subscriber: MediaSubscriber | None = None
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._write_loop, daemon=True,
                                        name=f"rec-{camera}/{profile}")

    @property
    def name(self) -> str:
        return f"{self.camera}/{self.profile}"

    @property
    def dropped(self) -> int:
        """Units the camera sent that never reached the writer (a slow disk, for one)."""
        sub = self.subscriber
        return self.dropped_before + (sub.stats.missed if sub is not None else 0)

    def start(self) -> None:
        self._thread.start()

    def follow(self, endpoint: str) -> None:
        """The camera announced where this stream is: move there if it is elsewhere."""
        if endpoint and endpoint != self.endpoint:
            log.info("%s: following the stream to %s", self.name, endpoint)
            self.endpoint = endpoint  # the thread resubscribes at its next wake-up

    async def stop(self) -> None:
        if not self._thread.is_alive():
            return
        # The thread finishes the batch in hand and closes its segment.
        self._stopping.set()
        await asyncio.to_thread(self._thread.join, JOIN_S)
        if self._thread.is_alive():
            log.error("%s: the writer did not finish within %.0f s; its last fragment "
                      "will be repaired at the next start", self.name, JOIN_S)

    # -- the writer thread --------------------------------------------------------------
    def _write_loop(self) -> None:
        # The thread owns the socket (ZeroMQ sockets are not shared between threads) and
        # takes units in batches: a slow disk fills the socket's queue, and the camera's
        # publisher then drops units for this subscriber alone (a sequence gap, counted).
        sub: MediaSubscriber | None = None
        try:
            while not self._stopping.is_set():
                if sub is None or sub.endpoint != self.endpoint:
                    if sub is not None:
                        self.dropped_before += sub.stats.missed
                        sub.close()
                    sub = self.subscriber = MediaSubscriber(
                        self.service.zmq_ctx, self.endpoint, hwm=QUEUE_UNITS)
                frames = sub.take(WRITER_WAKE_S)
                if not frames:
                    self._guard(lambda: self.writer.close_if_idle(time.time_ns()))
                    continue
                for frame in frames:
                    if self._guard(functools.partial(self.writer.write, frame)):
                        self.failing = False
        finally:
            if sub is not None:
                sub.close()
            self._guard(self.writer.close)

    def _guard(self, step: Callable[[], object]) -> bool:
        """Run a writer step; a failure is counted and shown, never the end of the thread."""
        try:
            step()
            return True
        except RecordingWriteError as e:
            self._failed(str(e), logging.WARNING)
            if e.errno == errno.ENOSPC:
                self.service.disk_full_seen()
        except Exception as e:  # the thread must live on: the next keyframe tries again
            self._failed(f"{type(e).__name__}: {one_line(e)}", logging.ERROR, exc=e)
        return False

    def _failed(self, text: str, level: int, exc: BaseException | None = None) -> None:
        self.errors += 1
        self.failing = True
        if text != self.last_error:  # once per distinct error, not once a frame
            log.log(level, "%s: %s", self.name, text, exc_info=exc)
        self.last_error = text
        self.service.note_error(f"{self.name}: {text}")

    def _closed(self, info: SegmentInfo) -> None:
        try:
            self.service.catalog.add_segment(info)
        except Exception as e:  # sqlite3.Error, CatalogError, OSError: shown, not fatal
            self._failed(f"cannot index {info.path}: {one_line(e)}", logging.ERROR)

    def status(self) -> RecorderStream:
        c = self.writer.counters
        state: RecorderStreamState = (
            "error" if self.failing else
            "recording" if self.writer.current is not None else "waiting")
        return RecorderStream(camera_id=self.camera, profile=self.profile, state=state,
                              units_written=c.units_written, units_dropped=self.dropped,
                              units_skipped=c.dropped_before_keyframe + c.dropped_invalid,
                              segments=c.segments, write_errors=self.errors,
                              last_error=self.last_error)


# ----------------------------------------------------------------------------- bus


