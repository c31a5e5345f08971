"""`recorder`: every camera stream and every bus message, on disk, crash-safe.

**Layout** under ``[recorder] path`` (relative to the config file's folder when
not absolute)::

    video/<camera>/<stream>/<UTC start>.mp4   fragmented MP4 segments (mp4_segment)
    bus/<UTC start>.mcap                      the whole bus, one file per period (bus_log)
    catalog.sqlite                            the SQLite index (catalog)

(:mod:`edge.recorder.layout`; each drone service writes ``mavlink/<link>/``.)

**Video**: a thread per camera stream (:mod:`edge.recorder.stream_recorder`), which
follows the endpoint the camera announces on ``cam/<id>/<profile>/stream``.
**Bus**: one thread for the whole bus (:mod:`edge.recorder.bus_recorder`); the
broker's last-value replay at subscription is recorded too, once per start.
**Start-up**: the directory's lock, then what a crash left is made whole and
indexed (:mod:`edge.recorder.recovery`). **Retention**: once a minute and at once
when a write finds the disk full (:mod:`edge.recorder.retention`); what it removed,
and budgets it cannot meet, are alerts.

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
Every ``event/mark`` on the bus is added to the catalog, in the session whose
range holds the time it was made (its header's).

"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import sqlite3
import threading
import time
from pathlib import Path

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
    RecordedSession,
    RecorderSessions,
    RecorderStatus,
    Reply,
    Severity,
)
from edge.config import ConfigError
from edge.recorder.bus_recorder import BusRecorder
from edge.recorder.catalog import Catalog, CatalogError, Session
from edge.recorder.layout import (
    BUS_DIR,
    CATALOG_FILE,
    VIDEO_DIR,
    recordings_dir,
)
from edge.recorder.recovery import (
    Recovered,
    lock_recordings,
    one_line,
    recover_files,
    unlock_recordings,
)
from edge.recorder.retention import PruneReport, Retention
from edge.recorder.stream_recorder import StreamRecorder
from edge.runtime.service import Service

log = logging.getLogger(__name__)

STATUS_EVERY_S = 1.0
# The session index on the bus: the newest this many (a drill a day is years of them).
SESSIONS_PUBLISHED = 100
# Retention runs this often, and at once when a write fails for want of space.
RETENTION_EVERY_S = 60.0
SOURCE = "recorder"  # alerts' source



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
        self.zmq_ctx = self.ctx.bus.sync_ctx
        self.bus_endpoint = self.ctx.endpoints.sub
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
            unlock_recordings(lock)
            raise ConfigError(where, [f"recorder.path: cannot use {self.root}: "
                                      f"{e.strerror or e}"]) from None
        except CatalogError as e:
            unlock_recordings(lock)
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
            await self._publish_sessions()
            self.ctx.ready(f"recording {len(self.streams)} stream(s) and the bus "
                           f"into {self.root}")
            await asyncio.Event().wait()
        finally:
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await t
            # In parallel: each may wait a few seconds for its disk, within the runner's grace.
            stops = [rec.stop() for rec in self.streams.values()]
            if self.bus_log is not None:
                stops.append(self.bus_log.stop())
            await asyncio.gather(*stops)
            with contextlib.suppress(Exception):
                self.ctx.bus.publish(topics.RECORDER_STATUS, await asyncio.to_thread(
                    self.status, False))
            self.catalog.close()
            unlock_recordings(lock)

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
                    self.ctx.log.warning("cannot index a mark: %s", one_line(e))
                    self.note_error(f"cannot index a mark: {one_line(e)}")
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
            self.ctx.log.error("%s: the catalog failed: %s", action, one_line(e))
            reply = Reply(status="error",
                          detail=f"the catalog cannot be written: {one_line(e)}")
        reply.elapsed_ms = round((time.monotonic() - started) * 1000, 1)
        if reply.status == "accepted" and action in ("start", "stop"):
            # At once, not at the next tick: the dashboard shows the change as it happens.
            self.ctx.bus.publish(topics.RECORDER_STATUS, await asyncio.to_thread(self.status))
        if reply.status == "accepted":
            await self._publish_sessions()
        return reply

    async def _publish_sessions(self) -> None:
        """The session index on `recorder/sessions` (a state topic: late subscribers and
        the centre's sync get the latest)."""
        try:
            every = await asyncio.to_thread(self.catalog.sessions)
        except (sqlite3.Error, CatalogError) as e:
            self.ctx.log.warning("cannot read the sessions: %s", one_line(e))
            return
        self.ctx.bus.publish(topics.RECORDER_SESSIONS, RecorderSessions(
            total=len(every), sessions=[RecordedSession(
                session_id=x.id, name=x.name, start_ns=x.start_ns, end_ns=x.end_ns,
                released=x.released) for x in every[-SESSIONS_PUBLISHED:]]))

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
                async with asyncio.timeout(self.RETENTION_EVERY_S):
                    await self._disk_full.wait()

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
