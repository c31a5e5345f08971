"""`recorder`: every camera stream and every bus message, on disk, crash-safe.

**Layout** under ``[recorder] path`` (relative to the config file's folder when
not absolute)::

    video/<camera>/<stream>/<UTC start>.mp4   fragmented MP4 segments (mp4_segment)
    bus/<UTC start>.mcap                      the whole bus, one file per period (bus_log)
    catalog.sqlite                            the SQLite index (catalog)

(:mod:`edge.recorder.layout`; each drone service writes ``mavlink/<link>/``.)

**Video.** For every configured camera and each of its streams, a thread of its
own subscribes to the stream's media plane
(:class:`~edge.media.subscriber.MediaSubscriber`, taken in batches: one wake-up per
batch, never a hop through the event loop) and feeds a
:class:`~edge.recorder.mp4_segment.SegmentWriter`. The subscriber starts on the
stream's usual endpoint (``Endpoints.media``) at once and moves to whatever
endpoint the camera announces on ``cam/<id>/<profile>/stream``, as the uplink
does. Its socket holds :data:`QUEUE_UNITS` units; beyond that (the disk is slower
than the camera) the camera's publisher drops units for the recorder alone, which
sees a sequence gap, counts it (``units_dropped``) and resumes at the next
keyframe, so the loss is a gap between segments, never a broken file, and neither
the camera nor the bus waits. Every segment the writer closes is registered in the
catalog from its thread.

**Bus.** One thread owns a SUB socket on the broker's fan-out endpoint,
subscribed to everything, and writes each message with
:class:`~edge.recorder.bus_log.BusLogWriter`. Files rotate on wall-clock
boundaries: every multiple of ``segment_seconds`` since the Unix epoch (on the
minute with the default 60 s), so a file's name says which period it holds,
whatever time the recorder started. Each finished file is registered. A
subscription to everything also makes the broker replay its last-value cache:
those replays are recorded too (with their original headers), once per start.

**Start-up.** Before recording, files a crash left behind are made whole and
indexed: every ``.mp4`` the catalog does not know is cut after its last complete
fragment (:func:`~edge.recorder.mp4_repair.repair`) and registered from its
fragment index (an MP4 with no complete fragment holds no picture and is
deleted); every unknown ``.mcap`` is recovered
(:func:`~edge.recorder.bus_log.recover`) and registered.

**Errors.** A write error (disk full) never stops the recorder: the writer
reports it, the stream's state becomes ``error`` with the message, and the
next keyframe tries again; the bus thread abandons its file (recovered at once
if it can be) and opens another a second later. The status on
``recorder/status`` (1 Hz) says what is recorded, what was dropped, bytes used
and free, the open session and the last error.

**Sessions and marks.** The recorder answers ``RecordCommand`` requests as
``recorder`` (:data:`~edge.bus.topics.RECORDER_SERVICE`; ``edge record start``,
``stop``, ``release``): a named session is a time range in the catalog that
retention keeps until it is released. The catalog is the session's only
record, so an open session outlives a recorder restart; each change is
published on ``recorder/status`` at once, which also puts it in the bus log.
Every ``event/mark`` on the bus is added to the catalog, in the session open
when it arrives.

**One writer.** The recorder holds ``recorder.lock`` in the recordings
directory (``flock``) while it runs, as ``edge record reindex`` does while it
repairs files: neither may cut a file the other is still writing, and two
recorders never share a directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import functools
import logging
import os
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import av
import zmq

from edge.bus import topics
from edge.bus.envelope import Envelope
from edge.bus.messages import (
    RECORD_ACTIONS,
    SESSION_NAME_MAX,
    Alert,
    CameraStream,
    EventMark,
    Message,
    RecordCommand,
    RecorderStatus,
    RecorderStream,
    RecorderStreamState,
    Reply,
    Severity,
)
from edge.config import ConfigError
from edge.media.subscriber import MediaSubscriber
from edge.recorder.bus_log import BusLogError, BusLogWriter, read, recover
from edge.recorder.catalog import Catalog, CatalogError, Session
from edge.recorder.layout import (
    BUS_DIR,
    CATALOG_FILE,
    VIDEO_DIR,
    new_file,
    parse_utc_name,
    recordings_dir,
)
from edge.recorder.mp4_repair import Mp4FormatError, read_index, repair
from edge.recorder.mp4_segment import (
    TIME_BASE,
    Keyframe,
    RecordingWriteError,
    SegmentInfo,
    SegmentWriter,
)
from edge.recorder.retention import PruneReport, Retention
from edge.runtime.service import Service

log = logging.getLogger(__name__)

STATUS_EVERY_S = 1.0
# Retention runs this often, and at once when a write fails for want of space.
RETENTION_EVERY_S = 60.0
SOURCE = "recorder"  # alerts' source
# Units a stream's socket holds for its writer thread: about 8 s at 30 fps, room for a
# disk that stalls for a few seconds before the recorder loses anything.
QUEUE_UNITS = 256
# The writer thread's wait for a unit: also how often a stopped camera's last segment is
# checked for closing (`close_if_idle`).
WRITER_WAKE_S = 0.25
# A camera silent this long ends its segment (the next unit starts a new one at a keyframe).
MAX_GAP_S = 2.0
# The bus thread's socket queue. Large: the bus log must keep up with bursts, and a
# message queued here costs memory, not a stall of anyone else.
BUS_RCVHWM = 200_000
BUS_WAKE_S = 0.25  # at most this between BusLogWriter.poll() calls (its crash window)
BUS_BATCH = 1000
# After a bus log write error, wait this long before opening another file.
BUS_RETRY_S = 1.0
# How long stopping may wait for a writer thread to finish its file (the runner's grace is 4 s).
JOIN_S = 3.0

LOCK_FILE = "recorder.lock"


def _one_line(e: BaseException) -> str:
    text = str(e).splitlines()[0] if str(e) else type(e).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def lock_recordings(root: Path) -> int | None:
    """Take ``root/recorder.lock`` (see "One writer" above): the open descriptor, which
    holds the lock until it is closed (or the process dies), or None when another process
    holds it. Raises OSError when the file cannot be opened."""
    fd = os.open(root / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except OSError:
        os.close(fd)
        raise
    return fd


def session_name_problem(name: str) -> str | None:
    """Why `name` cannot name a session (one sentence), or None when it can."""
    text = name.strip()
    if not text:
        return "a session needs a name"
    if len(text) > SESSION_NAME_MAX:
        return (f"a session name is at most {SESSION_NAME_MAX} characters "
                f"(this one has {len(text)})")
    if not text.isprintable():
        return "a session name must be one line of printable text"
    if text.isdigit():
        # `edge record info 12` reads a number as a session id.
        return "a session name cannot be only digits (it would read as a session id)"
    return None


def session_data(session: Session) -> dict[str, object]:
    """A session as a reply's data (times in wall-clock ns)."""
    return {"session_id": session.id, "name": session.name, "start_ns": session.start_ns,
            "end_ns": session.end_ns, "released": session.released}


# ----------------------------------------------------------------------------- start-up


def index_segment(path: Path, *, error: str | None = None) -> SegmentInfo | None:
    """A `SegmentInfo` for a segment file the writer never reported (the recorder was
    killed), from its fragments: start from its name, times from the fragment index,
    codec and size from its header. None when the file has no complete fragment."""
    index = read_index(path)
    if not index.fragments or index.timescale <= 0:
        return None
    start_ns = parse_utc_name(path.stem)
    if start_ns is None:
        start_ns = path.stat().st_mtime_ns
    scale = index.timescale
    first = index.fragments[0].decode_time
    last = index.fragments[-1]
    ticks = last.decode_time + last.duration - first

    def ns(t: int) -> int:
        return t * 1_000_000_000 // scale

    with av.open(str(path)) as container:
        ctx = container.streams.video[0].codec_context
        codec = "h265" if ctx.name == "hevc" else ctx.name
        width, height = ctx.width, ctx.height
    keyframes = tuple(Keyframe(start_ns + ns(f.decode_time - first),
                               (f.decode_time - first) * 90_000 // scale, f.offset)
                      for f in index.fragments if f.keyframe)
    end_ns = start_ns + ns(ticks)
    return SegmentInfo(path, path.parent.parent.name, path.parent.name, codec, width, height,
                       start_ns, end_ns, end_ns, 0, ticks * 90_000 // scale, index.samples,
                       index.size, keyframes, True, error, TIME_BASE)


@dataclass
class Recovered:
    segments: int = 0  # registered
    repaired: int = 0  # of which were cut
    deleted: int = 0  # no complete fragment: nothing to keep
    bus_logs: int = 0  # registered
    bus_recovered: int = 0  # of which were rewritten
    problems: list[str] | None = None


def recover_files(root: Path, catalog: Catalog) -> Recovered:
    """Make whole and register what a crash left under `root` (see the module docstring).
    Blocking: run it in a thread. A file that cannot be read is named in `problems`."""
    done = Recovered(problems=[])
    assert done.problems is not None
    known = catalog.segment_paths()
    for path in sorted((root / VIDEO_DIR).glob("*/*/*.mp4")):
        if path in known:
            continue
        try:
            cut = repair(path)
            if not cut.playable:
                path.unlink()
                done.deleted += 1
                continue
            note = (f"repaired at start-up: {cut.bytes_cut} torn bytes cut"
                    if cut.changed else None)
            info = index_segment(path, error=note)
            if info is None:
                path.unlink()
                done.deleted += 1
                continue
            catalog.add_segment(info)
            done.segments += 1
            done.repaired += cut.changed
        except (OSError, Mp4FormatError, av.FFmpegError, CatalogError) as e:
            done.problems.append(f"{path}: {_one_line(e)}")
    bus_dir = root / BUS_DIR
    for stale in bus_dir.glob("*.recovering"):
        with contextlib.suppress(OSError):
            stale.unlink()  # a recovery cut short: the torn file it came from is still there
    known_logs = catalog.bus_log_paths()
    for path in sorted(bus_dir.glob("*.mcap")):
        if path in known_logs:
            continue
        try:
            result = recover(path)
            first = last = None
            count = 0
            for message in read(path):
                first = message.log_time_ns if first is None else first
                last = message.log_time_ns
                count += 1
            catalog.add_bus_log(path, first_ns=first, last_ns=last, messages=count,
                                size=path.stat().st_size)
            done.bus_logs += 1
            done.bus_recovered += result.rewritten
        except (OSError, BusLogError, CatalogError) as e:
            done.problems.append(f"{path}: {_one_line(e)}")
    return done


# ----------------------------------------------------------------------------- video


class StreamRecorder:
    """One camera stream: a writer thread that owns the stream's subscriber."""

    def __init__(self, service: RecorderService, camera: str, profile: str,
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
                        self.service.ctx.bus.sync_ctx, self.endpoint, hwm=QUEUE_UNITS)
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
            self._failed(f"{type(e).__name__}: {_one_line(e)}", logging.ERROR, exc=e)
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
            self._failed(f"cannot index {info.path}: {_one_line(e)}", logging.ERROR)

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


class BusRecorder:
    """The bus log: a thread with its own SUB socket on the broker's fan-out endpoint."""

    def __init__(self, service: RecorderService) -> None:
        self.service = service
        self.directory = service.root / BUS_DIR
        self.period_ns = max(1, round(service.segment_seconds * 1e9))
        self.writer = BusLogWriter()
        self.lost = 0  # received while no file could be open
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
        sock: zmq.Socket[bytes] = self.service.ctx.bus.sync_ctx.socket(zmq.SUB)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.RCVHWM, BUS_RCVHWM)
        sock.connect(self.service.ctx.endpoints.sub)
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
            self._failed(f"the bus log stopped: {type(e).__name__}: {_one_line(e)}", exc=e)
        finally:
            sock.close(linger=0)
            self._finish()

    def _write(self, frames: list[bytes], stamp: int) -> None:
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
            self._failed(f"cannot start a bus log: {_one_line(e)}")
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
            log.warning("bus log: %s stays torn until the next start: %s", path, _one_line(e))

    def _register(self, path: Path, first: int | None, last: int | None, messages: int,
                  size: int) -> None:
        try:
            self.service.catalog.add_bus_log(path, first_ns=first, last_ns=last,
                                             messages=messages, size=size)
        except Exception as e:  # sqlite3.Error, CatalogError, OSError: shown, not fatal
            self._failed(f"cannot index {path}: {_one_line(e)}")

    def _failed(self, text: str, exc: BaseException | None = None) -> None:
        self.errors += 1
        if text != self.last_error:
            log.warning("bus log: %s", text, exc_info=exc)
        self.last_error = text
        self.service.note_error(f"bus log: {text}")


# ----------------------------------------------------------------------------- service


def _unlock(fd: int | None) -> None:
    if fd is not None:
        with contextlib.suppress(OSError):
            os.close(fd)


class RecorderService(Service):
    RETENTION_EVERY_S = RETENTION_EVERY_S
    root: Path
    catalog: Catalog
    segment_seconds: float

    async def run(self) -> None:
        cfg = self.ctx.config.recorder
        where = str(self.ctx.config_path)
        if not cfg.enabled:
            raise ConfigError(where, ["recorder.enabled: the recorder is disabled; set "
                                      "enabled = true in [recorder] to run it"])
        self.root = recordings_dir(cfg, self.ctx.config_dir)
        self.segment_seconds = cfg.segment_seconds
        self.errors = 0
        self.last_error = ""
        self._error_lock = threading.Lock()
        self.streams: dict[tuple[str, str], StreamRecorder] = {}
        self.bus_log: BusRecorder | None = None
        self.session: Session | None = None  # the open one; replaced, never changed in place
        self._loop = asyncio.get_running_loop()
        self._disk_full = asyncio.Event()
        self._alerted: set[str] = set()  # budget and pruning problems already alerted
        lock: int | None = None
        try:
            for sub in (VIDEO_DIR, BUS_DIR):
                (self.root / sub).mkdir(parents=True, exist_ok=True)
            lock = lock_recordings(self.root)
            if lock is None:
                raise ConfigError(where, [f"recorder.path: another recorder (or `edge record "
                                          f"reindex`) is using {self.root}"])
            self.catalog = await asyncio.to_thread(Catalog, self.root / CATALOG_FILE)
        except OSError as e:
            _unlock(lock)
            raise ConfigError(where, [f"recorder.path: cannot use {self.root}: "
                                      f"{e.strerror or e}"]) from None
        except CatalogError as e:
            _unlock(lock)
            raise ConfigError(where, [f"recorder.path: {e}"]) from None
        tasks: list[asyncio.Task[None]] = []
        try:
            found = await asyncio.to_thread(recover_files, self.root, self.catalog)
            self.session = await asyncio.to_thread(self.catalog.current_session)
            self.retention = Retention(self.catalog, self.root, cfg)
            self._report_recovery(found)
            for cam in self.ctx.config.cameras:
                for profile in cam.streams:
                    try:
                        rec = StreamRecorder(self, cam.id, profile,
                                             self.ctx.endpoints.media(cam.id, profile))
                    except ValueError as e:
                        raise ConfigError(where, [f"cameras: {cam.id}: {e}"]) from None
                    self.streams[(cam.id, profile)] = rec
            self.bus_log = BusRecorder(self)
            self.bus_log.start()
            for rec in self.streams.values():
                rec.start()
            tasks = [asyncio.create_task(self._follow_streams(), name="rec-follow"),
                     asyncio.create_task(self._record_marks(), name="rec-marks"),
                     asyncio.create_task(self._status_loop(), name="rec-status"),
                     asyncio.create_task(self._retention_loop(), name="rec-retention")]
            self.ctx.bus.serve(topics.RECORDER_SERVICE, self._handle)
            self.ctx.ready(f"recording {len(self.streams)} stream(s) and the bus "
                           f"into {self.root}")
            await asyncio.Event().wait()
        finally:
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await t
            # In parallel: each may wait up to JOIN_S for its disk, within the runner's grace.
            stops = [rec.stop() for rec in self.streams.values()]
            if self.bus_log is not None:
                stops.append(self.bus_log.stop())
            await asyncio.gather(*stops)
            with contextlib.suppress(Exception):
                self.ctx.bus.publish(topics.RECORDER_STATUS, await asyncio.to_thread(
                    self.status, False))
            self.catalog.close()
            _unlock(lock)

    def _report_recovery(self, found: Recovered) -> None:
        if found.segments or found.deleted or found.bus_logs:
            self.ctx.log.info(
                "start-up: %d segment(s) indexed (%d repaired, %d without a picture deleted), "
                "%d bus log(s) indexed (%d recovered)", found.segments, found.repaired,
                found.deleted, found.bus_logs, found.bus_recovered)
        for problem in found.problems or []:
            self.ctx.log.warning("start-up: cannot index %s", problem)
            self.note_error(problem)

    def note_error(self, text: str) -> None:
        """Any thread: the last error, for the status."""
        with self._error_lock:
            self.errors += 1
            self.last_error = text

    async def _follow_streams(self) -> None:
        sub = self.ctx.bus.subscribe(topics.CAM)
        try:
            async for env in sub:
                msg = env.message
                if isinstance(msg, CameraStream):
                    rec = self.streams.get((msg.camera_id, msg.profile))
                    if rec is not None:
                        rec.follow(msg.endpoint)
        finally:
            sub.close()

    async def _record_marks(self) -> None:
        sub = self.ctx.bus.subscribe(topics.EVENT_MARK)
        try:
            async for env in sub:
                msg = env.message
                if not isinstance(msg, EventMark):
                    continue
                try:
                    # The time the mark was made (its header), not when it reached us.
                    await asyncio.to_thread(self.catalog.add_mark, env.header.ts_ns, msg.note,
                                            msg.author or env.header.source)
                except (sqlite3.Error, CatalogError) as e:
                    self.ctx.log.warning("cannot index a mark: %s", _one_line(e))
                    self.note_error(f"cannot index a mark: {_one_line(e)}")
        finally:
            sub.close()

    # -- requests (`edge record`) --------------------------------------------------------
    async def _handle(self, env: Envelope) -> Message:
        started = time.monotonic()
        req = env.message
        if not isinstance(req, RecordCommand):
            return Reply(status="error", detail=f"expected a recorder.record request, got "
                                                f"{env.header.type}")
        action = req.action.strip().lower()
        try:
            if action == "start":
                reply = await self._start(req.name, env.header.source)
            elif action == "stop":
                reply = await self._stop(env.header.source)
            elif action == "release":
                reply = await self._release(req.session_id, env.header.source)
            else:
                reply = Reply(status="rejected", detail=f"unknown action {req.action!r}: "
                                                        f"one of {', '.join(RECORD_ACTIONS)}")
        except sqlite3.Error as e:  # the disk or the database failed: the caller learns why
            self.ctx.log.error("%s: the catalog failed: %s", action, _one_line(e))
            reply = Reply(status="error",
                          detail=f"the catalog cannot be written: {_one_line(e)}")
        reply.elapsed_ms = round((time.monotonic() - started) * 1000, 1)
        if reply.status == "accepted" and action in ("start", "stop"):
            # At once, not at the next tick: the dashboard shows the change as it happens.
            self.ctx.bus.publish(topics.RECORDER_STATUS, await asyncio.to_thread(self.status))
        return reply

    async def _start(self, name: str, who: str) -> Reply:
        problem = session_name_problem(name)
        if problem is not None:
            return Reply(status="rejected", detail=problem)
        try:
            session = await asyncio.to_thread(self.catalog.start_session, name.strip(),
                                              time.time_ns())
        except CatalogError as e:  # another session is open
            return Reply(status="rejected", detail=str(e))
        self.session = session
        self.ctx.log.info("session %d %r started by %s", session.id, session.name, who)
        return Reply(status="accepted", detail=f"session {session.id} {session.name!r} "
                                               f"started", data=session_data(session))

    async def _stop(self, who: str) -> Reply:
        session = await asyncio.to_thread(self.catalog.stop_session, time.time_ns())
        self.session = None
        if session is None:
            return Reply(status="rejected", detail="no session is open")
        self.ctx.log.info("session %d %r stopped by %s", session.id, session.name, who)
        return Reply(status="accepted", detail=f"session {session.id} {session.name!r} "
                                               f"stopped", data=session_data(session))

    async def _release(self, session_id: int, who: str) -> Reply:
        if session_id <= 0:
            return Reply(status="rejected", detail="release needs a session id (a number "
                                                   "from `edge record ls`)")
        session = await asyncio.to_thread(self.catalog.session, session_id)
        if session is None:
            return Reply(status="rejected", detail=f"no session {session_id}")
        if session.released:
            return Reply(status="accepted", detail=f"session {session_id} {session.name!r} "
                         f"was already released", data=session_data(session))
        try:
            session = await asyncio.to_thread(self.catalog.release_session, session_id)
        except CatalogError as e:  # still open
            return Reply(status="rejected", detail=str(e))
        self.ctx.log.info("session %d %r released by %s", session.id, session.name, who)
        return Reply(status="accepted", detail=f"session {session_id} {session.name!r} "
                     f"released: retention may prune it", data=session_data(session))

    async def _status_loop(self) -> None:
        was_recording: bool | None = None
        while True:
            # Off the loop: a catalog query and a statvfs can wait on a busy disk.
            status = await asyncio.to_thread(self.status)
            self.ctx.bus.publish(topics.RECORDER_STATUS, status)
            if was_recording is not None and status.recording != was_recording:
                if status.recording:
                    self._alert("notice", "Recording resumed")
                else:
                    self._alert("error", f"Recording failed: {status.last_error or 'stopped'}")
            was_recording = status.recording
            await asyncio.sleep(STATUS_EVERY_S)

    # -- retention ---------------------------------------------------------------------
    def disk_full_seen(self) -> None:
        """Any thread: a write failed for want of space; prune now."""
        self._loop.call_soon_threadsafe(self._disk_full.set)

    async def _retention_loop(self) -> None:
        while True:
            full = self._disk_full.is_set()
            self._disk_full.clear()
            report = await asyncio.to_thread(self.retention.prune, self._open_paths(),
                                             disk_full=full)
            self._alert_pruning(report)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._disk_full.wait(), self.RETENTION_EVERY_S)

    def _open_paths(self) -> set[Path]:
        """Files being written, not yet in the catalog: never pruned."""
        paths = {rec.writer.current.path for rec in self.streams.values()
                 if rec.writer.current is not None}
        if self.bus_log is not None and self.bus_log.path is not None:
            paths.add(self.bus_log.path)
        return paths

    def _alert_pruning(self, report: PruneReport) -> None:
        if report.removed:
            severity: Severity = ("warning" if "disk_full" in report.reasons else "notice")
            self._alert(severity, f"Recordings {report.summary()}")
        # A budget that cannot be met, or a file that cannot go, says so once.
        now = {f"Recording budget not met: {line}" for line in report.unmet}
        now |= {f"Pruning: {line}" for line in report.failed}
        for text in sorted(now - self._alerted):
            self._alert("error" if text.startswith("Pruning") else "warning", text)
        self._alerted = now

    def _alert(self, severity: Severity, text: str) -> None:
        self.ctx.log.log(logging.ERROR if severity == "error" else logging.WARNING
                         if severity == "warning" else logging.INFO, "%s", text)
        self.ctx.bus.publish(topics.alert(SOURCE), Alert(severity=severity, source=SOURCE,
                                                         text=text))

    def status(self, running: bool = True) -> RecorderStatus:
        streams = [rec.status() for rec in self.streams.values()]
        used = 0
        with contextlib.suppress(Exception):
            used = self.catalog.total_bytes()
        for rec in self.streams.values():
            current = rec.writer.current
            if current is not None:
                used += current.size
        bus = self.bus_log
        bus_path = bus.path if bus is not None else None
        if bus_path is not None:
            with contextlib.suppress(OSError):
                used += bus_path.stat().st_size
        free, free_pct = 0, 0.0
        with contextlib.suppress(OSError):
            disk = shutil.disk_usage(self.root)
            free = disk.free
            free_pct = round(100 * disk.free / disk.total, 1) if disk.total else 0.0
        session = self.session
        return RecorderStatus(
            recording=running and bus_path is not None
            and not any(s.state == "error" for s in streams),
            path=str(self.root), bytes_on_disk=used, free_bytes=free,
            free_percent=free_pct, streams=streams,
            bus_messages=bus.messages if bus is not None else 0,
            bus_file=str(bus_path or ""), errors=self.errors, last_error=self.last_error,
            session_id=session.id if session else None,
            session_name=session.name if session else "",
            session_start_ns=session.start_ns if session else None)

    def health(self) -> tuple[str, str]:
        if not self.ctx._ready.is_set():
            return ("starting", "")
        live = sum(1 for rec in self.streams.values() if rec.writer.current is not None)
        failing = [rec.name for rec in self.streams.values() if rec.failing]
        bus = self.bus_log
        detail = (f"{live}/{len(self.streams)} stream(s) recording, "
                  f"{bus.messages if bus else 0} bus messages")
        if failing or bus is None or bus.path is None:
            return ("degraded", f"{detail}; failing: {', '.join(failing) or 'bus log'}")
        return ("running", detail)
