"""The recorder's index: one SQLite catalog of what is on disk, so replay can seek
without scanning files.

**Tables.** ``segments`` (one row per MP4 segment file: camera, stream, path,
wall-clock start and end, where it sits on its writer's timeline, frames, bytes,
codec, picture size, whether it was closed and the error that ended it, if any),
``keyframes`` (per segment: receipt time, pts in the file, byte offset of the
fragment it starts), ``bus_logs`` (one row per MCAP file: path, first and last
log time, messages, bytes), ``sessions`` (named time ranges that retention must
not prune until released) and ``marks`` (the commander's marks, with the session
open when they were made). Times are wall-clock ns (the receipt times the media
plane and the bus log use). Paths are stored as given (the recorder gives
absolute ones), one row per path: registering a path again replaces its row, so
re-indexing a file after a repair is idempotent.

**Concurrency.** The database is in WAL mode (readers such as ``edge record ls``
never block the recorder, nor it them) with ``synchronous=NORMAL`` (a power cut
may lose the last transactions, never corrupt the file; the catalog can be
rebuilt from the files). One :class:`Catalog` holds one connection shared by
every thread of its process under a lock: the recorder's writer threads register
a segment a minute each, far too little traffic to need a connection each.

**Coverage.** :meth:`Catalog.coverage` merges a stream's segments into the
intervals that were recorded, and lists the gaps between them (camera down,
recorder down, units lost to a slow disk): consecutive segments of a camera that
ran on join exactly (a segment's end is the next one's start), so any space
between them is a gap.

**Retention** (:mod:`edge.recorder.retention`) walks the files oldest first
(:meth:`Catalog.files_oldest_first`), never touches what a session not yet
released holds (:meth:`Catalog.held_sessions`), and removes a file and its row
in one transaction (:meth:`Catalog.delete_file`).
"""

from __future__ import annotations

import contextlib
import heapq
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from edge.recorder.mp4_segment import SegmentInfo

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS segments (
    id INTEGER PRIMARY KEY,
    camera TEXT NOT NULL,
    stream TEXT NOT NULL,
    path TEXT NOT NULL UNIQUE,
    start_ns INTEGER NOT NULL,
    end_ns INTEGER NOT NULL,
    stream_start INTEGER NOT NULL,   -- 1/time_base ticks on the writer's timeline
    duration INTEGER NOT NULL,       -- ticks
    time_base_num INTEGER NOT NULL,
    time_base_den INTEGER NOT NULL,
    frames INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    codec TEXT NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    closed INTEGER NOT NULL,
    error TEXT
);
CREATE INDEX IF NOT EXISTS segments_by_stream ON segments (camera, stream, start_ns);
CREATE INDEX IF NOT EXISTS segments_by_start ON segments (start_ns);
CREATE TABLE IF NOT EXISTS keyframes (
    segment_id INTEGER NOT NULL REFERENCES segments (id) ON DELETE CASCADE,
    wall_ns INTEGER NOT NULL,
    pts INTEGER NOT NULL,
    offset INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS keyframes_by_segment ON keyframes (segment_id, wall_ns);
CREATE TABLE IF NOT EXISTS bus_logs (
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL UNIQUE,
    first_ns INTEGER,
    last_ns INTEGER,
    messages INTEGER NOT NULL,
    bytes INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS bus_logs_by_time ON bus_logs (first_ns);
CREATE TABLE IF NOT EXISTS sessions (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    start_ns INTEGER NOT NULL,
    end_ns INTEGER,                  -- NULL while the session is open
    released INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS marks (
    id INTEGER PRIMARY KEY,
    wall_ns INTEGER NOT NULL,
    note TEXT NOT NULL,
    author TEXT NOT NULL,
    session_id INTEGER REFERENCES sessions (id)
);
CREATE INDEX IF NOT EXISTS marks_by_time ON marks (wall_ns);
"""


class CatalogError(Exception):
    """The catalog cannot be opened or used; the message is one line naming the file."""


@dataclass(frozen=True, slots=True)
class SegmentRow:
    id: int
    camera: str
    stream: str
    path: Path
    start_ns: int
    end_ns: int
    stream_start: int
    duration: int
    frames: int
    bytes: int
    codec: str
    width: int
    height: int
    closed: bool
    error: str | None


@dataclass(frozen=True, slots=True)
class KeyframeRow:
    wall_ns: int
    pts: int
    offset: int


@dataclass(frozen=True, slots=True)
class BusLogRow:
    id: int
    path: Path
    first_ns: int | None
    last_ns: int | None
    messages: int
    bytes: int


@dataclass(frozen=True, slots=True)
class FileRow:
    """A recorded file the catalog knows, as retention sees it: a video segment or a bus
    log, its time range (None for a bus log that holds no message) and its size."""

    kind: Literal["video", "bus"]
    path: Path
    start_ns: int | None
    end_ns: int | None
    bytes: int


@dataclass(frozen=True, slots=True)
class Session:
    id: int
    name: str
    start_ns: int
    end_ns: int | None  # None: still open
    released: bool

    @property
    def open(self) -> bool:
        return self.end_ns is None


@dataclass(frozen=True, slots=True)
class Mark:
    id: int
    wall_ns: int
    note: str
    author: str
    session_id: int | None


@dataclass(frozen=True, slots=True)
class Interval:
    start_ns: int
    end_ns: int

    @property
    def seconds(self) -> float:
        return (self.end_ns - self.start_ns) / 1e9


@dataclass(frozen=True, slots=True)
class Coverage:
    """What was recorded of one camera stream: `intervals` in time order and the `gaps`
    between consecutive ones (never before the first or after the last)."""

    camera: str
    stream: str
    intervals: tuple[Interval, ...]
    gaps: tuple[Interval, ...]
    segments: int
    frames: int
    bytes: int


class Catalog:
    """The recorder's SQLite catalog; see the module docstring. Thread-safe."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, check_same_thread=False, timeout=10.0,
                                 isolation_level=None)
        except (OSError, sqlite3.Error) as e:
            raise CatalogError(f"{self.path}: cannot open the recording catalog: {e}") from None
        self._db = db
        self._lock = threading.Lock()
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            # SQLite reuses its WAL file but never shrinks it; after pruning on a
            # nearly full disk it would hold the space pruning freed.
            db.execute("PRAGMA journal_size_limit=4194304")
            db.execute("PRAGMA foreign_keys=ON")
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise CatalogError(f"{self.path}: catalog schema {version} is newer than this "
                                   f"recorder's ({SCHEMA_VERSION}); upgrade edge")
            db.executescript(_SCHEMA)
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except sqlite3.DatabaseError as e:
            db.close()
            raise CatalogError(f"{self.path}: not a usable recording catalog: {e}") from None
        except CatalogError:
            db.close()
            raise

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                yield self._db
            except BaseException:
                self._rollback()
                raise
            try:
                self._db.execute("COMMIT")
            except sqlite3.Error:
                # A COMMIT that fails (a full disk) leaves the transaction open, and
                # every later call would fail inside it: end it, then report.
                self._rollback()
                raise

    def _rollback(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self._db.execute("ROLLBACK")

    def _query(self, sql: str, args: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return list(self._db.execute(sql, args).fetchall())

    # -- segments ----------------------------------------------------------------------

    def add_segment(self, info: SegmentInfo) -> int:
        """Register a segment file (replacing any row for the same path); its id."""
        path = str(info.path)
        with self._tx() as db:
            db.execute("DELETE FROM segments WHERE path = ?", (path,))
            cur = db.execute(
                "INSERT INTO segments (camera, stream, path, start_ns, end_ns, stream_start, "
                "duration, time_base_num, time_base_den, frames, bytes, codec, width, height, "
                "closed, error) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (info.camera, info.stream, path, info.first_wall_ns, info.end_wall_ns,
                 info.stream_start, info.duration, info.time_base.numerator,
                 info.time_base.denominator, info.frames, info.size, info.codec, info.width,
                 info.height, int(info.closed), info.error))
            segment_id = cur.lastrowid
            assert segment_id is not None
            db.executemany("INSERT INTO keyframes (segment_id, wall_ns, pts, offset) "
                           "VALUES (?, ?, ?, ?)",
                           [(segment_id, k.wall_ns, k.pts, k.offset) for k in info.keyframes])
        return segment_id

    def remove_segment(self, path: str | os.PathLike[str]) -> bool:
        """Forget a segment file (pruned, or found unplayable); True if it was known."""
        with self._tx() as db:
            return db.execute("DELETE FROM segments WHERE path = ?", (str(path),)).rowcount > 0

    def segment_paths(self) -> set[Path]:
        return {Path(str(p)) for (p,) in self._query("SELECT path FROM segments")}

    def segments(self, camera: str | None = None, stream: str | None = None, *,
                 start_ns: int | None = None, end_ns: int | None = None) -> list[SegmentRow]:
        """Segments (of a camera, a stream) overlapping [start_ns, end_ns), oldest first."""
        where, args = _where(camera, stream, start_ns, end_ns)
        rows = self._query(
            "SELECT id, camera, stream, path, start_ns, end_ns, stream_start, duration, frames, "
            f"bytes, codec, width, height, closed, error FROM segments{where} "
            "ORDER BY start_ns, id", args)
        return [SegmentRow(int(r[0]), str(r[1]), str(r[2]), Path(str(r[3])), int(r[4]),
                           int(r[5]), int(r[6]), int(r[7]), int(r[8]), int(r[9]),
                           str(r[10]), int(r[11]), int(r[12]), bool(r[13]),
                           None if r[14] is None else str(r[14])) for r in rows]

    def keyframes(self, segment_id: int) -> list[KeyframeRow]:
        rows = self._query("SELECT wall_ns, pts, offset FROM keyframes WHERE segment_id = ? "
                           "ORDER BY wall_ns", (segment_id,))
        return [KeyframeRow(int(a), int(b), int(c)) for a, b, c in rows]

    def streams(self) -> list[tuple[str, str]]:
        """Every (camera, stream) with a segment, sorted."""
        return [(str(c), str(s)) for c, s in self._query(
            "SELECT DISTINCT camera, stream FROM segments ORDER BY camera, stream")]

    def coverage(self, camera: str, stream: str, *, start_ns: int | None = None,
                 end_ns: int | None = None, join_ns: int = 0) -> Coverage:
        """The recorded intervals of one stream (clipped to [start_ns, end_ns)) and the gaps
        between them. Segments less than `join_ns` apart count as one interval."""
        segs = self.segments(camera, stream, start_ns=start_ns, end_ns=end_ns)
        intervals: list[Interval] = []
        for s in segs:
            a = s.start_ns if start_ns is None else max(s.start_ns, start_ns)
            b = s.end_ns if end_ns is None else min(s.end_ns, end_ns)
            if b <= a:
                continue
            if intervals and a <= intervals[-1].end_ns + join_ns:
                last = intervals[-1]
                intervals[-1] = Interval(last.start_ns, max(last.end_ns, b))
            else:
                intervals.append(Interval(a, b))
        gaps = tuple(Interval(x.end_ns, y.start_ns)
                     for x, y in zip(intervals, intervals[1:], strict=False))
        return Coverage(camera, stream, tuple(intervals), gaps, len(segs),
                        sum(s.frames for s in segs), sum(s.bytes for s in segs))

    def coverage_all(self, *, start_ns: int | None = None, end_ns: int | None = None,
                     join_ns: int = 0) -> list[Coverage]:
        return [self.coverage(c, s, start_ns=start_ns, end_ns=end_ns, join_ns=join_ns)
                for c, s in self.streams()]

    def total_bytes(self) -> int:
        """Bytes in every segment and bus log file the catalog knows."""
        (row,) = self._query("SELECT (SELECT coalesce(sum(bytes), 0) FROM segments) + "
                             "(SELECT coalesce(sum(bytes), 0) FROM bus_logs)")
        return int(row[0])

    # -- bus logs ----------------------------------------------------------------------

    def add_bus_log(self, path: str | os.PathLike[str], *, first_ns: int | None,
                    last_ns: int | None, messages: int, size: int) -> int:
        """Register a bus log file (replacing any row for the same path); its id."""
        with self._tx() as db:
            db.execute("DELETE FROM bus_logs WHERE path = ?", (str(path),))
            cur = db.execute("INSERT INTO bus_logs (path, first_ns, last_ns, messages, bytes) "
                             "VALUES (?, ?, ?, ?, ?)",
                             (str(path), first_ns, last_ns, messages, size))
            assert cur.lastrowid is not None
            return cur.lastrowid

    def bus_logs(self, *, start_ns: int | None = None,
                 end_ns: int | None = None) -> list[BusLogRow]:
        clauses: list[str] = []
        args: list[object] = []
        if start_ns is not None:
            clauses.append("(last_ns IS NULL OR last_ns >= ?)")
            args.append(start_ns)
        if end_ns is not None:
            clauses.append("(first_ns IS NULL OR first_ns < ?)")
            args.append(end_ns)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self._query("SELECT id, path, first_ns, last_ns, messages, bytes FROM bus_logs"
                           f"{where} ORDER BY first_ns, id", tuple(args))
        return [BusLogRow(int(r[0]), Path(str(r[1])),
                          None if r[2] is None else int(r[2]),
                          None if r[3] is None else int(r[3]),
                          int(r[4]), int(r[5])) for r in rows]

    def bus_log_paths(self) -> set[Path]:
        return {Path(str(p)) for (p,) in self._query("SELECT path FROM bus_logs")}

    # -- retention ---------------------------------------------------------------------

    def files_oldest_first(self, batch: int = 500) -> Iterator[FileRow]:
        """Every segment and bus log, oldest start first (bus logs without a message
        first of all). Read `batch` rows at a time, each batch a query of its own, so
        rows may come and go between batches (new ones are newer, and are not missed
        unless they start before the last row read)."""
        def segments() -> Iterator[FileRow]:
            after: tuple[int, int] = (-(1 << 63), -1)
            while rows := self._query(
                    "SELECT id, path, start_ns, end_ns, bytes FROM segments "
                    "WHERE start_ns > ? OR (start_ns = ? AND id > ?) "
                    "ORDER BY start_ns, id LIMIT ?", (after[0], after[0], after[1], batch)):
                for r in rows:
                    yield FileRow("video", Path(str(r[1])), int(r[2]), int(r[3]), int(r[4]))
                after = (int(rows[-1][2]), int(rows[-1][0]))

        def bus_logs() -> Iterator[FileRow]:
            after: tuple[int, int] = (-(1 << 63), -1)
            while rows := self._query(
                    "SELECT id, path, first_ns, last_ns, bytes, coalesce(first_ns, -1) AS k "
                    "FROM bus_logs WHERE k > ? OR (k = ? AND id > ?) ORDER BY k, id LIMIT ?",
                    (after[0], after[0], after[1], batch)):
                for r in rows:
                    yield FileRow("bus", Path(str(r[1])), None if r[2] is None else int(r[2]),
                                  None if r[3] is None else int(r[3]), int(r[4]))
                after = (int(rows[-1][5]), int(rows[-1][0]))

        def key(f: FileRow) -> int:
            return -1 if f.start_ns is None else f.start_ns

        yield from heapq.merge(segments(), bus_logs(), key=key)

    def delete_file(self, path: str | os.PathLike[str],
                    unlink: Callable[[Path], object]) -> bool:
        """Forget a segment or bus log and remove its file (`unlink(path)`) in one
        transaction: if `unlink` raises, the row stays (the file is still there) and the
        error propagates. The file goes before the commit, so on a full disk the space it
        frees is there for the commit to use; should the commit fail all the same, the row
        outlives its file (and the error propagates): the next call for that path, with an
        `unlink` that takes a missing file as removed, forgets it. True if it was known."""
        key = str(path)
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                known = (db.execute("DELETE FROM segments WHERE path = ?", (key,)).rowcount
                         + db.execute("DELETE FROM bus_logs WHERE path = ?", (key,)).rowcount)
                unlink(Path(key))
                # Not `_tx`: a failed COMMIT must be rolled back too, or the connection
                # stays inside a transaction and every later one fails.
                db.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
                raise
        return known > 0

    def checkpoint(self) -> bool:
        """Move the WAL into the database and cut the WAL file to nothing; False when a
        reader kept part of it. Every transaction adds pages to the WAL, which SQLite
        reuses but never shrinks on its own: after pruning, on a full disk, that space is
        wanted back."""
        with self._lock:
            busy = self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
        return not busy

    def held_sessions(self) -> list[Session]:
        """Named sessions retention must not prune: not released (open ones included)."""
        return self._sessions(" WHERE released = 0")

    # -- sessions and marks ------------------------------------------------------------

    def start_session(self, name: str, start_ns: int) -> Session:
        """Open a named session. Refused (`CatalogError`) while another is open."""
        name = name.strip()
        if not name:
            raise CatalogError("a session needs a name")
        with self._tx() as db:
            row = db.execute("SELECT name FROM sessions WHERE end_ns IS NULL").fetchone()
            if row is not None:
                raise CatalogError(f"session {row[0]!r} is still open; stop it first")
            cur = db.execute("INSERT INTO sessions (name, start_ns) VALUES (?, ?)",
                             (name, start_ns))
            assert cur.lastrowid is not None
            return Session(cur.lastrowid, name, start_ns, None, False)

    def stop_session(self, end_ns: int) -> Session | None:
        """Close the open session at `end_ns`; it, or None if none was open."""
        with self._tx() as db:
            row = db.execute("SELECT id FROM sessions WHERE end_ns IS NULL").fetchone()
            if row is None:
                return None
            db.execute("UPDATE sessions SET end_ns = max(start_ns, ?) WHERE id = ?",
                       (end_ns, row[0]))
        return self.session(int(row[0]))

    def release_session(self, session_id: int) -> Session:
        """Let retention prune a (closed) session's recordings."""
        with self._tx() as db:
            row = db.execute("SELECT end_ns FROM sessions WHERE id = ?", (session_id,)).fetchone()
            if row is None:
                raise CatalogError(f"no session {session_id}")
            if row[0] is None:
                raise CatalogError(f"session {session_id} is still open; stop it first")
            db.execute("UPDATE sessions SET released = 1 WHERE id = ?", (session_id,))
        found = self.session(session_id)
        assert found is not None
        return found

    def session(self, session_id: int) -> Session | None:
        found = self._sessions(" WHERE id = ?", (session_id,))
        return found[0] if found else None

    def current_session(self) -> Session | None:
        found = self._sessions(" WHERE end_ns IS NULL")
        return found[0] if found else None

    def sessions(self) -> list[Session]:
        """Every named session, oldest first."""
        return self._sessions()

    def find_session(self, text: str) -> Session:
        """A session by id (digits) or name (exact, else ignoring case); CatalogError,
        in words for an operator, when none or several match."""
        text = text.strip()
        if text.isascii() and text.isdigit():
            found = self.session(int(text))
            if found is None:
                raise CatalogError(f"no session {text} (see edge record ls)")
            return found
        named = [s for s in self.sessions() if s.name == text]
        if not named:
            named = [s for s in self.sessions() if s.name.casefold() == text.casefold()]
        if not named:
            raise CatalogError(f"no session named {text!r} (see edge record ls)")
        if len(named) > 1:
            ids = ", ".join(str(s.id) for s in named)
            raise CatalogError(f"{len(named)} sessions are named {text!r} (ids {ids}): "
                               "give the id")
        return named[0]

    def _sessions(self, where: str = "", args: tuple[object, ...] = ()) -> list[Session]:
        rows = self._query("SELECT id, name, start_ns, end_ns, released FROM sessions"
                           f"{where} ORDER BY start_ns, id", args)
        return [Session(int(r[0]), str(r[1]), int(r[2]),
                        None if r[3] is None else int(r[3]), bool(r[4]))
                for r in rows]

    def add_mark(self, wall_ns: int, note: str, author: str = "") -> Mark:
        """Record a mark; it belongs to the session whose range holds its time, if any
        (the time it was made: one made just before a session started, or just before
        it stopped, may reach the recorder after)."""
        with self._tx() as db:
            row = db.execute("SELECT id FROM sessions WHERE start_ns <= ? AND "
                             "(end_ns IS NULL OR end_ns >= ?) ORDER BY start_ns DESC LIMIT 1",
                             (wall_ns, wall_ns)).fetchone()
            session_id = None if row is None else int(row[0])
            cur = db.execute("INSERT INTO marks (wall_ns, note, author, session_id) "
                             "VALUES (?, ?, ?, ?)", (wall_ns, note, author, session_id))
            assert cur.lastrowid is not None
            return Mark(cur.lastrowid, wall_ns, note, author, session_id)

    def marks(self, *, session_id: int | None = None) -> list[Mark]:
        where, args = ("", ()) if session_id is None else (" WHERE session_id = ?",
                                                          (session_id,))
        rows = self._query("SELECT id, wall_ns, note, author, session_id FROM marks"
                           f"{where} ORDER BY wall_ns, id", args)
        return [Mark(int(r[0]), int(r[1]), str(r[2]), str(r[3]),
                     None if r[4] is None else int(r[4])) for r in rows]


def _where(camera: str | None, stream: str | None, start_ns: int | None,
           end_ns: int | None) -> tuple[str, tuple[object, ...]]:
    clauses: list[str] = []
    args: list[object] = []
    if camera is not None:
        clauses.append("camera = ?")
        args.append(camera)
    if stream is not None:
        clauses.append("stream = ?")
        args.append(stream)
    if start_ns is not None:
        clauses.append("end_ns > ?")
        args.append(start_ns)
    if end_ns is not None:
        clauses.append("start_ns < ?")
        args.append(end_ns)
    return (f" WHERE {' AND '.join(clauses)}" if clauses else ""), tuple(args)
