"""Retention: which recordings go when, and their removal, catalog and files together.

**Policy** (``[recorder]``). Whole files are pruned, the oldest first (by the
time their recording starts): video segments and bus logs (from the catalog)
and MAVLink logs (``mavlink/<link>/*.tlog``, timed by their name and their
modification time: they are not in the catalog). A file goes when

1. ``age``: it ended more than ``retention_hours`` ago;
2. ``max_bytes``: while the recordings take more than ``max_bytes``
   (catalogued sizes, MAVLink logs and the files being written);
3. ``min_free``: while the filesystem has less than ``min_free_percent`` free;
4. ``disk_full``: when the caller says a write found the disk full, while less
   than :data:`DISK_FULL_FREE_PERCENT` (or ``min_free_percent`` if larger), and
   less than :data:`DISK_FULL_FREE_BYTES`, is free, so that recording resumes
   even with no ``min_free_percent`` set, and on a small disk too.

Free space is measured again after each removal, and also estimated as what was
free plus what was removed: a file a reader still holds open frees nothing
until it is closed, and must not make retention remove everything after it.
(The catalog's WAL grows with every removal, too: it is checkpointed and cut
back when a pass removed anything. What the estimate got wrong, the next pass
measures.)

**Never pruned**: a file whose time range overlaps a named session that is not
released (an open session from its start on), and a file being written: those
named in `open_paths` (the service's open segments and bus log), the newest
MAVLink log of each link (its drone service may be writing it), and anything
the catalog does not know (the writers register a file when they close it).
When what is left cannot meet the budget, the report says so (`unmet`).

**Consistency.** A catalogued file is removed inside a catalog transaction
(:meth:`~edge.recorder.catalog.Catalog.delete_file`): its row is deleted, the
file unlinked, then the transaction committed. A file that cannot be unlinked
(say, a directory now stands where the segment was) keeps its row, is named in
`failed`, and pruning goes on with the next file. A file already gone counts as
removed and its row goes. A commit that fails after the unlink (the catalog's
own disk is sick) leaves a row without its file; the next pass removes it.

**Threads.** :meth:`Retention.prune` is synchronous and blocking (file system
and SQLite): call it from a thread, not the event loop; the recorder calls it
once a minute and when a write fails with ENOSPC. Calls are serialised.
"""

from __future__ import annotations

import datetime as dt
import errno
import heapq
import logging
import os
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from edge.config import RecorderConfig
from edge.recorder.catalog import Catalog, CatalogError, FileRow
from edge.recorder.layout import TLOG_DIR

log = logging.getLogger(__name__)

Reason = Literal["age", "max_bytes", "min_free", "disk_full"]
FileKind = Literal["video", "bus", "mavlink"]
REASONS: tuple[Reason, ...] = ("age", "max_bytes", "min_free", "disk_full")
# Free space pruning makes after a write found the disk full (unless min_free_percent asks
# for more): enough for recording to go on for a while, not a thrash of one file at a time.
DISK_FULL_FREE_PERCENT = 1.0
# ...and at least this much, whatever the disk's size: 1% of a small disk (an SD card,
# a test's tmpfs) is less than one segment, and recording would fail again at once.
DISK_FULL_FREE_BYTES = 64 << 20
_NS_PER_HOUR = 3_600_000_000_000


@dataclass(frozen=True, slots=True)
class PrunedFile:
    path: Path
    kind: FileKind
    bytes: int  # as catalogued (MAVLink logs: as found)
    start_ns: int  # wall-clock ns of the recording it held
    end_ns: int
    reason: Reason


@dataclass(frozen=True, slots=True)
class PruneReport:
    """What one :meth:`Retention.prune` did, and where the budget stands after it."""

    removed: tuple[PrunedFile, ...]
    # One line each: a file that could not be removed (it stays, and so does its row),
    # or a step that could not be taken at all (catalog or disk unreadable).
    failed: tuple[str, ...]
    # One line each: a limit still exceeded after pruning, because what is left is
    # protected (named sessions, files being written) or could not be removed.
    unmet: tuple[str, ...]
    recorded_bytes: int  # the recordings, after pruning
    free_bytes: int  # on the recordings' filesystem, after (0 if it could not be read)
    total_bytes: int  # the filesystem's size (0 if it could not be read)

    @property
    def count(self) -> int:
        return len(self.removed)

    @property
    def bytes(self) -> int:
        return sum(f.bytes for f in self.removed)

    @property
    def oldest_ns(self) -> int | None:
        """Where the earliest recording removed started."""
        return min((f.start_ns for f in self.removed), default=None)

    @property
    def newest_ns(self) -> int | None:
        """Where the latest recording removed ended."""
        return max((f.end_ns for f in self.removed), default=None)

    @property
    def reasons(self) -> dict[Reason, int]:
        """Files removed per reason, in the order of :data:`REASONS`."""
        counts = Counter(f.reason for f in self.removed)
        return {r: counts[r] for r in REASONS if counts[r]}

    @property
    def free_percent(self) -> float:
        return 100 * self.free_bytes / self.total_bytes if self.total_bytes else 0.0

    def summary(self) -> str:
        """One line for the log and the alert; empty when nothing was removed."""
        if not self.removed:
            return ""
        oldest, newest = self.oldest_ns, self.newest_ns
        assert oldest is not None and newest is not None
        why = ", ".join(f"{_WHY[r]}: {n}" for r, n in self.reasons.items())
        return (f"pruned {self.count} recording file(s), {human_bytes(self.bytes)}, "
                f"recorded {utc_text(oldest)} to {utc_text(newest)} ({why})")


_WHY: dict[Reason, str] = {"age": "older than retention_hours",
                           "max_bytes": "over max_bytes", "min_free": "under min_free_percent",
                           "disk_full": "disk full"}


def human_bytes(n: int) -> str:
    """Binary multiples, as `max_bytes` is written: ``1.5 GiB``."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


def utc_text(wall_ns: int) -> str:
    t = dt.datetime.fromtimestamp(wall_ns / 1e9, dt.UTC)
    return f"{t:%Y-%m-%d %H:%M:%S}Z"


@dataclass(frozen=True, slots=True)
class _File:
    kind: FileKind
    path: Path
    start_ns: int
    end_ns: int
    bytes: int
    writing: bool = False  # the newest MAVLink log of its link


class Retention:
    """Prunes the recordings under `root` (catalogued in `catalog`) by `config`'s budget;
    see the module docstring."""

    def __init__(self, catalog: Catalog, root: Path, config: RecorderConfig) -> None:
        self.catalog = catalog
        self.root = root
        self.retention_ns = round(config.retention_hours * _NS_PER_HOUR)
        self.max_bytes = config.max_bytes
        self.min_free_percent = config.min_free_percent
        self._lock = threading.Lock()

    def prune(self, open_paths: Iterable[str | os.PathLike[str]] = (), *,
              now_ns: int | None = None, disk_full: bool = False) -> PruneReport:
        """Remove what the policy says must go, oldest first; never raises for a file or
        a disk that misbehaves (see `PruneReport.failed`). `open_paths`: files being
        written and not yet in the catalog (each stream's open segment, the open bus
        log), counted in the bytes recorded and never touched. `disk_full`: a write just
        failed with ENOSPC. Blocking."""
        with self._lock:
            return self._prune({_norm(p) for p in open_paths},
                               time.time_ns() if now_ns is None else now_ns, disk_full)

    def _prune(self, opened: set[Path], now_ns: int, disk_full: bool) -> PruneReport:
        failed: list[str] = []
        removed: list[PrunedFile] = []
        try:
            held = [(s.start_ns, s.end_ns) for s in self.catalog.held_sessions()]
            recorded = self.catalog.total_bytes()
        except (sqlite3.Error, CatalogError) as e:
            failed.append(f"cannot read the catalog {self.catalog.path}: {_one_line(e)}")
            return PruneReport((), tuple(failed), (), 0, *self._disk(failed))
        tlogs = self._tlogs(failed)
        recorded += sum(t.bytes for t in tlogs)
        for path in opened:
            try:
                recorded += path.stat().st_size
            except OSError:
                pass  # not created yet, or already gone: nothing to count
        free_before, total = self._disk(failed)
        free = free_before
        # The free space to keep, and the reason pruning for it is given.
        floor_reason: Reason = "min_free"
        floor_pct = self.min_free_percent or 0.0
        if disk_full and DISK_FULL_FREE_PERCENT > floor_pct:
            floor_reason, floor_pct = "disk_full", DISK_FULL_FREE_PERCENT
        floor = total * floor_pct / 100
        if disk_full and floor < DISK_FULL_FREE_BYTES:
            floor_reason, floor = "disk_full", min(float(total), DISK_FULL_FREE_BYTES)

        def reason(f: _File) -> Reason | None:
            if f.end_ns < cutoff:
                return "age"
            if self.max_bytes is not None and recorded > self.max_bytes:
                return "max_bytes"
            if free < floor:
                return floor_reason
            return None

        cutoff = now_ns - self.retention_ns
        freed = 0
        for f in heapq.merge(self._catalogued(failed), tlogs, key=lambda f: f.start_ns):
            why = reason(f)
            if why is None:
                if f.start_ns > cutoff:
                    break  # every later file is younger still, and the budget is met
                continue
            if f.writing or _norm(f.path) in opened or _overlaps(f, held):
                continue
            if not self._remove(f, failed):
                continue
            removed.append(PrunedFile(f.path, f.kind, f.bytes, f.start_ns, f.end_ns, why))
            recorded -= f.bytes
            freed += f.bytes
            if free < floor:
                # Measured again, and estimated: a file a reader holds open frees its
                # space only when closed, and must not send every other file after it.
                free = max(self._disk([])[0], free_before + freed)
        if removed:
            try:
                self.catalog.checkpoint()
            except sqlite3.Error as e:
                failed.append(f"cannot checkpoint the catalog {self.catalog.path}: "
                              f"{_one_line(e)}")
        free_now = self._disk([])[0] if total else 0
        unmet: list[str] = []
        if self.max_bytes is not None and recorded > self.max_bytes:
            unmet.append(f"recordings take {human_bytes(recorded)}, over max_bytes "
                         f"({human_bytes(self.max_bytes)}): what is left is in named sessions, "
                         f"being written or could not be removed")
        if free < floor:
            unmet.append(f"{100 * free_now / total:.1f}% of the disk is free, under "
                         f"{100 * floor / total:.3g}%: what is left is in named sessions, "
                         f"being written, could not be removed or is not recordings")
        report = PruneReport(tuple(removed), tuple(failed), tuple(unmet), recorded,
                             free_now, total)
        if removed:
            log.info("%s", report.summary())
        return report

    # -- the files -----------------------------------------------------------------------

    def _catalogued(self, failed: list[str]) -> Iterator[_File]:
        try:
            for row in self.catalog.files_oldest_first():
                yield self._from_row(row)
        except (sqlite3.Error, CatalogError) as e:
            failed.append(f"cannot read the catalog {self.catalog.path}: {_one_line(e)}")

    @staticmethod
    def _from_row(row: FileRow) -> _File:
        start, end = row.start_ns, row.end_ns
        if start is None or end is None:
            # A bus log without a message: nothing in it to time it by but the file.
            try:
                start = end = row.path.stat().st_mtime_ns
            except OSError:
                start = end = 0
        return _File(row.kind, row.path, start, end, row.bytes)

    def _tlogs(self, failed: list[str]) -> list[_File]:
        """Every MAVLink log, the newest of each link marked as being written."""
        found: list[_File] = []
        base = self.root / TLOG_DIR
        try:
            links = sorted(p for p in base.iterdir() if p.is_dir()) if base.is_dir() else []
        except OSError as e:
            failed.append(f"cannot list {base}: {e.strerror or e}")
            return []
        for link in links:
            files: list[_File] = []
            try:
                for path in link.glob("*.tlog"):
                    st = path.stat()
                    start = _tlog_start(path.stem)
                    start = st.st_mtime_ns if start is None else min(start, st.st_mtime_ns)
                    files.append(_File("mavlink", path, start, st.st_mtime_ns, st.st_size))
            except OSError as e:
                failed.append(f"cannot list {link}: {e.strerror or e}")
                continue
            files.sort(key=lambda f: (f.start_ns, f.path))
            if files:
                newest = files[-1]
                files[-1] = _File(newest.kind, newest.path, newest.start_ns, newest.end_ns,
                                  newest.bytes, writing=True)
            found.extend(files)
        found.sort(key=lambda f: (f.start_ns, f.path))
        return found

    def _remove(self, f: _File, failed: list[str]) -> bool:
        try:
            if f.kind == "mavlink":
                _unlink(f.path)
            else:
                self.catalog.delete_file(f.path, _unlink)
        except OSError as e:
            failed.append(f"cannot remove {f.path}: {e.strerror or e}")
            return False
        except (sqlite3.Error, CatalogError) as e:
            failed.append(f"cannot remove {f.path} from the catalog: {_one_line(e)}")
            return False
        return True

    def _disk(self, failed: list[str]) -> tuple[int, int]:
        """(free, total) bytes of the recordings' filesystem; (0, 0) if it cannot be read."""
        try:
            st = os.statvfs(self.root)
        except OSError as e:
            failed.append(f"cannot read the free space of {self.root}: {e.strerror or e}")
            return 0, 0
        return st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass  # already gone: the row goes with it
    except IsADirectoryError:
        # Linux says EISDIR for a directory; the operator needs to hear what stands there.
        raise OSError(errno.EISDIR, "a directory stands where the recording was") from None


def _overlaps(f: _File, held: list[tuple[int, int | None]]) -> bool:
    """Whether `f` holds any moment of a held session (an open one runs on forever)."""
    return any(f.end_ns >= start and (end is None or f.start_ns <= end) for start, end in held)


def _norm(path: str | os.PathLike[str]) -> Path:
    return Path(os.path.abspath(path))


def _tlog_start(stem: str) -> int | None:
    """The start a tlog's name gives (`20261201T184800Z`, as the drone service names it)."""
    try:
        t = dt.datetime.strptime(stem, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
    except ValueError:
        return None
    return int(t.timestamp()) * 1_000_000_000


def _one_line(e: BaseException) -> str:
    text = str(e).splitlines()[0] if str(e) else type(e).__name__
    return text if len(text) <= 300 else text[:297] + "..."
