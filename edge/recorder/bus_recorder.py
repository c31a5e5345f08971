"""The whole control bus recorded: a thread that owns a SUB socket and writes MCAP.

Files rotate on wall-clock boundaries, every multiple of ``segment_seconds`` since
the Unix epoch, so a file's name says which period it holds whatever time the
recorder started; each finished file is registered in the catalog. After a write
error the file is abandoned (recovered at once if it can be) and another opened
:data:`BUS_RETRY_S` later.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import threading
import time
from pathlib import Path

import zmq

from edge.bus import topics
from edge.recorder.bus_log import BusLogError, BusLogWriter, read, recover
from edge.recorder.layout import BUS_DIR, new_file
from edge.recorder.recovery import one_line
from edge.recorder.stream_recorder import JOIN_S, RecorderHost

log = logging.getLogger(__name__)

# The bus thread's socket queue. Large: the bus log must keep up with bursts, and a
# message queued here costs memory, not a stall of anyone else.
BUS_RCVHWM = 200_000
BUS_WAKE_S = 0.25  # at most this between BusLogWriter.poll() calls (its crash window)
BUS_BATCH = 1000
# After a bus log write error, wait this long before opening another file.
BUS_RETRY_S = 1.0


class BusRecorder:
    """The bus log: a thread with its own SUB socket on the broker's fan-out endpoint."""

    def __init__(self, service: RecorderHost) -> None:
        self.service = service
        self.directory = service.root / BUS_DIR
        self.period_ns = max(1, round(service.segment_seconds * 1e9))
        self.writer = BusLogWriter()
        self.lost = 0  # received while no file could be open
        self.repeats = 0  # the broker's cache answering others' subscriptions: not logged
        self._last_state: dict[bytes, bytes] = {}  # state topic -> header last logged
        self.errors = 0
        self.last_error = ""
        self.connected = threading.Event()  # the socket is subscribed
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="rec-bus")

    @property
    def messages(self) -> int:
        return self.writer.stats.messages

    @property
    def path(self) -> Path | None:
        return self.writer.path

    def start(self) -> None:
        self._thread.start()

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.to_thread(self._thread.join, JOIN_S)
        if self._thread.is_alive():
            log.error("bus log: did not finish within %.0f s; the file will be recovered at "
                      "the next start", JOIN_S)

    def _run(self) -> None:
        sock: zmq.Socket[bytes] = self.service.zmq_ctx.socket(zmq.SUB)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.RCVHWM, BUS_RCVHWM)
        sock.connect(self.service.bus_endpoint)
        sock.setsockopt(zmq.SUBSCRIBE, b"")
        self.connected.set()
        recv = sock.recv_multipart
        next_rotate = 0
        retry_at = 0.0
        try:
            while not self._stop.is_set():
                now = time.time_ns()
                if now >= next_rotate or (self.writer.path is None
                                          and time.monotonic() >= retry_at):
                    if not self._rotate(now):
                        retry_at = time.monotonic() + BUS_RETRY_S
                    next_rotate = (now // self.period_ns + 1) * self.period_ns
                if sock.poll(int(BUS_WAKE_S * 1000)):
                    stamp = time.time_ns()
                    for _ in range(BUS_BATCH):
                        try:
                            frames = recv(zmq.NOBLOCK)
                        except zmq.Again:
                            break
                        self._write(frames, stamp)
                if self.writer.path is not None:
                    try:
                        self.writer.poll()
                    except OSError as e:
                        self._write_failed(e)
        except Exception as e:  # never silent: the status shows it
            self._failed(f"the bus log stopped: {type(e).__name__}: {one_line(e)}", exc=e)
        finally:
            sock.close(linger=0)
            self._finish()

    def _write(self, frames: list[bytes], stamp: int) -> None:
        if len(frames) > 1 and topics.is_state(frames[0]):
            # The broker answers every new subscription on the bus with its cache, and
            # our socket (subscribed to everything) sees each answer: a message logged
            # already, not news. Its header (source, seq, time) says it is the same.
            if self._last_state.get(frames[0]) == frames[1]:
                self.repeats += 1
                return
            self._last_state[frames[0]] = frames[1]
        if self.writer.path is None:
            self.lost += 1
            return
        try:
            self.writer.write(frames, stamp)
        except OSError as e:
            self.lost += 1
            self._write_failed(e)

    def _new_path(self, now_ns: int) -> Path:
        return new_file(self.directory, now_ns, ".mcap")

    def _rotate(self, now_ns: int) -> bool:
        """Finish the open file and start the next; False when no file could be opened."""
        self._finish()
        try:
            self.writer.open(self._new_path(now_ns))
        except (BusLogError, OSError) as e:
            self._failed(f"cannot start a bus log: {one_line(e)}")
            return False
        return True

    def _finish(self) -> None:
        path = self.writer.path
        if path is None:
            return
        try:
            done = self.writer.close()
        except OSError as e:
            self._failed(f"cannot finish {path}: {e.strerror or e}")
            self._salvage(path)
            return
        if done is not None:
            self._register(done.path, done.first_ns, done.last_ns, done.messages, done.size)

    def _write_failed(self, e: OSError) -> None:
        path = self.writer.path
        self.writer.abandon()
        if e.errno == errno.ENOSPC:
            self.service.disk_full_seen()
        self._failed(f"cannot write {path}: {e.strerror or e}")
        if path is not None:
            self._salvage(path)

    def _salvage(self, path: Path) -> None:
        """Make an abandoned file whole now if the disk lets us (else at the next start)."""
        try:
            recover(path)
            first = last = None
            count = 0
            for m in read(path):
                first = m.log_time_ns if first is None else first
                last = m.log_time_ns
                count += 1
            self._register(path, first, last, count, path.stat().st_size)
        except (BusLogError, OSError) as e:
            log.warning("bus log: %s stays torn until the next start: %s", path, one_line(e))

    def _register(self, path: Path, first: int | None, last: int | None, messages: int,
                  size: int) -> None:
        try:
            self.service.catalog.add_bus_log(path, first_ns=first, last_ns=last,
                                             messages=messages, size=size)
        except Exception as e:  # sqlite3.Error, CatalogError, OSError: shown, not fatal
            self._failed(f"cannot index {path}: {one_line(e)}")

    def _failed(self, text: str, exc: BaseException | None = None) -> None:
        self.errors += 1
        if text != self.last_error:
            log.warning("bus log: %s", text, exc_info=exc)
        self.last_error = text
        self.service.note_error(f"bus log: {text}")


# ----------------------------------------------------------------------------- service


