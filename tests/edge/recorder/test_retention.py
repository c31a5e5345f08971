"""Retention against real recordings (the recorder's own writers, real H.264, real bus
envelopes, real MAVLink) and real filesystems, a small tmpfs among them that fills up."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from edge.config import RecorderConfig
from edge.recorder.catalog import Catalog
from edge.recorder.layout import CATALOG_FILE
from edge.recorder.mp4_segment import RecordingWriteError, SegmentInfo, SegmentWriter
from edge.recorder.retention import DISK_FULL_FREE_PERCENT, PruneReport, Retention
from tests.support.media import START_NS, decode_all, encoded_units
from tests.support.retention import (
    S,
    catalog_disagreements,
    free_percent,
    record_bus_logs,
    record_tlogs,
    record_video,
    recorded_files,
    small_disk,
)

pytestmark = pytest.mark.timeout(120)

HOUR = 3600 * S
T0 = START_NS


def retention(catalog: Catalog, root: Path, **policy: object) -> Retention:
    return Retention(catalog, root, RecorderConfig.model_validate(policy))


def assert_consistent(root: Path, catalog: Catalog) -> None:
    missing, unknown = catalog_disagreements(root, catalog)
    assert (missing, unknown) == (set(), set())


def test_files_older_than_retention_hours_are_pruned_whole(tmp_path: Path) -> None:
    with Catalog(tmp_path / CATALOG_FILE) as cat:
        segments, _ = record_video(tmp_path, cat, 10.0)
        logs = record_bus_logs(tmp_path, cat, 10)
        tlogs = record_tlogs(tmp_path, "alpha", [T0, T0 + 2 * S, T0 + 4 * S])
        assert len(segments) == 10
        # An hour after T0 + 4.5 s: what ended before T0 + 4.5 s is past retention (the
        # fifth second's segment and bus log hold moments after it).
        pruner = retention(cat, tmp_path, retention_hours=1)
        report = pruner.prune(now_ns=T0 + HOUR + 9 * S // 2)

        gone = {f.path for f in report.removed}
        assert gone == ({s.path for s in segments[:4]} | set(logs[:4]) | set(tlogs[:2]))
        assert {f.reason for f in report.removed} == {"age"}
        assert all(f.end_ns < T0 + 9 * S // 2 for f in report.removed)
        assert not any(p.exists() for p in gone)
        assert all(s.path.stat().st_size == s.size for s in segments[4:])
        # The newest tlog of a link is being written: kept, however old it is.
        assert tlogs[2].exists()
        assert report.failed == report.unmet == ()
        assert report.oldest_ns == T0 and report.newest_ns is not None
        assert report.newest_ns < T0 + 9 * S // 2
        assert report.summary().startswith(f"pruned {len(gone)} recording file(s), ")
        assert "older than retention_hours" in report.summary()
        assert_consistent(tmp_path, cat)


def test_max_bytes_prunes_the_oldest_files_first_until_under_budget(tmp_path: Path) -> None:
    with Catalog(tmp_path / CATALOG_FILE) as cat:
        segments, _ = record_video(tmp_path, cat, 10.0)
        logs = record_bus_logs(tmp_path, cat, 10)
        total = cat.total_bytes()
        budget = total * 6 // 10
        report = retention(cat, tmp_path, max_bytes=budget).prune(now_ns=T0 + 20 * S)

        assert report.count > 0 and {f.reason for f in report.removed} == {"max_bytes"}
        assert report.recorded_bytes == cat.total_bytes() <= budget
        # Only just: the last file removed was needed to get under the budget.
        assert cat.total_bytes() + report.removed[-1].bytes > budget
        assert report.bytes == total - cat.total_bytes()
        # Oldest first: in start order, and every file left started no earlier.
        starts = [f.start_ns for f in report.removed]
        assert starts == sorted(starts)
        left = [s.start_ns for s in cat.segments()] + [b.first_ns or 0 for b in cat.bus_logs()]
        assert max(starts) <= min(left)
        # Whole files: each removed is gone, each kept is as its writer left it.
        assert not any(f.path.exists() for f in report.removed)
        sizes = {s.path: s.size for s in segments}
        for row in cat.segments():
            assert row.path.stat().st_size == sizes[row.path] == row.bytes
            assert decode_all(row.path) == row.frames
        for b in cat.bus_logs():
            assert b.path.stat().st_size == b.bytes and b.path in logs
        assert_consistent(tmp_path, cat)


def test_a_named_session_is_kept_over_budget_until_released(tmp_path: Path) -> None:
    with Catalog(tmp_path / CATALOG_FILE) as cat:
        segments, _ = record_video(tmp_path, cat, 10.0)
        record_bus_logs(tmp_path, cat, 10)
        drill = cat.start_session("Steel plant drill", T0 + 3 * S + S // 2)
        cat.stop_session(T0 + 5 * S + S // 2)
        pruner = retention(cat, tmp_path, max_bytes=1)
        report = pruner.prune(now_ns=T0 + 20 * S)

        # Everything goes but what holds a moment of the drill: seconds 3 to 5.
        held = {s.path for s in segments[3:6]}
        assert {s.path for s in cat.segments()} == held
        assert all(s.path.stat().st_size == s.size for s in segments[3:6])
        assert [(b.first_ns or 0) // S - T0 // S for b in cat.bus_logs()] == [3, 4, 5]
        assert not held & {f.path for f in report.removed}
        assert len(report.unmet) == 1 and "over max_bytes" in report.unmet[0]
        assert_consistent(tmp_path, cat)

        cat.release_session(drill.id)
        report = pruner.prune(now_ns=T0 + 20 * S)
        assert held <= {f.path for f in report.removed}
        assert cat.segments() == [] and cat.bus_logs() == [] and report.unmet == ()
        assert_consistent(tmp_path, cat)


def test_an_open_session_and_the_files_being_written_are_never_pruned(tmp_path: Path) -> None:
    with Catalog(tmp_path / CATALOG_FILE) as cat:
        segments, writer = record_video(tmp_path, cat, 10.0, keep_open=True)
        record_bus_logs(tmp_path, cat, 10)
        cat.start_session("Search", T0 + 7 * S + S // 2)  # still open: protects from here on
        current = writer.current
        assert current is not None and current.path.exists()
        report = retention(cat, tmp_path, max_bytes=1).prune([current.path], now_ns=T0 + 20 * S)

        assert current.path.exists() and current.path not in {f.path for f in report.removed}
        assert [s.path for s in cat.segments()] == [s.path for s in segments[7:]]
        assert [(b.first_ns or 0) // S - T0 // S for b in cat.bus_logs()] == [7, 8, 9]
        writer.close()  # the open segment is registered when it closes, as the recorder does
        assert_consistent(tmp_path, cat)


def test_min_free_percent_prunes_the_oldest_on_a_disk_that_filled(tmp_path: Path) -> None:
    with small_disk(tmp_path / "disk", "8m") as disk, Catalog(disk / CATALOG_FILE) as cat:
        segments, _ = record_video(disk, cat, 60.0, segment_seconds=2.0)
        record_bus_logs(disk, cat, 60, per_second=5)
        # Something else on the disk (a log, a core dump) takes most of what is left.
        room = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
        (disk / "other").write_bytes(b"\0" * (room - 1_000_000))
        assert free_percent(disk) < 15
        st = os.statvfs(disk)
        free_before, size = st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize

        report = retention(cat, disk, min_free_percent=30).prune(now_ns=T0 + 70 * S)

        assert free_percent(disk) >= 30 and report.free_percent >= 30
        assert report.unmet == () and report.failed == ()
        assert {f.reason for f in report.removed} == {"min_free"}
        starts = [f.start_ns for f in report.removed]
        assert starts == sorted(starts)
        left = [s.path for s in cat.segments()]
        assert left and left == [s.path for s in segments[-len(left):]]
        # No more than needed: without the last file removed, too little was freed.
        assert report.total_bytes == size
        assert free_before + report.bytes - report.removed[-1].bytes < size * 0.30
        assert (disk / "other").exists()
        assert_consistent(disk, cat)


def test_recording_onto_a_full_disk_prunes_and_resumes_without_touching_a_session(
        tmp_path: Path) -> None:
    """The recorder's loop: a write fails with ENOSPC, retention frees space, the next
    keyframe starts a new segment. The catalog lives on another disk here, so that what
    this checks is the pruning of the recordings, not SQLite on a full disk."""
    units = encoded_units("h264", 150.0)
    with small_disk(tmp_path / "disk", "3m") as disk, Catalog(tmp_path / CATALOG_FILE) as cat:
        session = cat.start_session("Drill", T0 + 10 * S)
        cat.stop_session(T0 + 20 * S)
        segments: list[SegmentInfo] = []

        def closed(info: SegmentInfo) -> None:
            cat.add_segment(info)
            segments.append(info)

        writer = SegmentWriter(disk / "video", "north", "main", segment_seconds=2.0,
                               fsync=False, on_segment=closed)
        pruner = retention(cat, disk, min_free_percent=None)  # pruned only when full
        reports: list[PruneReport] = []
        for unit in units:
            try:
                writer.write(unit)
            except RecordingWriteError as e:
                assert e.errno == errno.ENOSPC
                current = writer.current
                reports.append(pruner.prune([] if current is None else [current.path],
                                            now_ns=unit.received_ns, disk_full=True))
        writer.close()

        assert reports, "the disk never filled: the test records too little"
        assert all(r.removed and {f.reason for f in r.removed} == {"disk_full"}
                   and r.free_percent >= DISK_FULL_FREE_PERCENT for r in reports)
        # Recording went on to the end: the last segment ends at the last unit.
        last = max(segments, key=lambda s: s.end_wall_ns)
        assert last.last_wall_ns == units[-1].received_ns
        drill = [s for s in segments if s.end_wall_ns >= T0 + 10 * S
                 and s.first_wall_ns <= T0 + 20 * S]
        assert drill and all(s.path.exists() for s in drill)
        assert session.id == cat.held_sessions()[0].id
        for row in cat.segments():  # no file corrupt: each plays every frame it claims
            assert decode_all(row.path) == row.frames
        assert_consistent(disk, cat)


def test_a_file_that_cannot_be_removed_is_reported_and_the_rest_still_pruned(
        tmp_path: Path) -> None:
    with Catalog(tmp_path / CATALOG_FILE) as cat:
        segments, _ = record_video(tmp_path, cat, 6.0)
        # Someone put a directory where the oldest segment was: unlink() cannot remove it.
        stuck = segments[0].path
        stuck.unlink()
        stuck.mkdir()
        (stuck / "notes.txt").write_text("not a recording")
        report = retention(cat, tmp_path, retention_hours=1).prune(now_ns=T0 + HOUR + 10 * S)

        assert report.failed == (f"cannot remove {stuck}: a directory stands where the "
                                 "recording was",)
        assert {f.path for f in report.removed} == {s.path for s in segments[1:]}
        # Its row stays: the catalog still describes what is on disk at that path.
        assert [s.path for s in cat.segments()] == [stuck]
        assert stuck.is_dir() and (stuck / "notes.txt").exists()
        assert recorded_files(tmp_path) == {stuck}  # nothing left but the directory


def test_a_row_whose_file_is_already_gone_is_forgotten(tmp_path: Path) -> None:
    with Catalog(tmp_path / CATALOG_FILE) as cat:
        segments, _ = record_video(tmp_path, cat, 3.0)
        segments[0].path.unlink()  # a commit that failed after the unlink leaves this
        report = retention(cat, tmp_path, retention_hours=1).prune(now_ns=T0 + HOUR + 10 * S)
        assert report.count == 3 and report.failed == ()
        assert cat.segments() == []
        assert_consistent(tmp_path, cat)
