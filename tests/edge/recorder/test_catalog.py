"""The recorder's SQLite catalog: segments, keyframes, coverage with gaps, bus logs,
sessions and marks, on a real database file."""

from __future__ import annotations

import sqlite3
import threading
from fractions import Fraction
from pathlib import Path

import pytest

from edge.recorder.catalog import Catalog, CatalogError, Interval
from edge.recorder.mp4_segment import Keyframe, SegmentInfo, SegmentWriter
from tests.support.media import encoded_units

S = 1_000_000_000
T0 = 1_796_150_880 * S


def segment(path: Path, start: int, end: int, *, camera: str = "north", stream: str = "main",
            frames: int = 30, keyframes: tuple[Keyframe, ...] = (),
            error: str | None = None) -> SegmentInfo:
    return SegmentInfo(path, camera, stream, "h264", 640, 360, start, end - S // 30, end,
                       0, (end - start) * 90_000 // S, frames, 12_345, keyframes, True, error)


def test_a_segment_and_its_keyframes_round_trip(tmp_path: Path) -> None:
    keys = (Keyframe(T0, 0, 1200), Keyframe(T0 + S, 90_000, 50_000))
    with Catalog(tmp_path / "catalog.db") as cat:
        sid = cat.add_segment(segment(tmp_path / "a.mp4", T0, T0 + 2 * S, keyframes=keys))
        (row,) = cat.segments()
        assert (row.id, row.camera, row.stream, row.path) == (sid, "north", "main",
                                                              tmp_path / "a.mp4")
        assert (row.start_ns, row.end_ns, row.frames, row.bytes) == (T0, T0 + 2 * S, 30, 12_345)
        assert (row.codec, row.width, row.height, row.closed, row.error) == (
            "h264", 640, 360, True, None)
        assert [(k.wall_ns, k.pts, k.offset) for k in cat.keyframes(sid)] == [
            (T0, 0, 1200), (T0 + S, 90_000, 50_000)]


def test_registering_a_path_again_replaces_its_row(tmp_path: Path) -> None:
    with Catalog(tmp_path / "catalog.db") as cat:
        p = tmp_path / "a.mp4"
        cat.add_segment(segment(p, T0, T0 + 2 * S, keyframes=(Keyframe(T0, 0, 100),)))
        sid = cat.add_segment(segment(p, T0, T0 + S, frames=12, error="cannot write: full"))
        (row,) = cat.segments()
        assert (row.id, row.frames, row.end_ns, row.error) == (sid, 12, T0 + S,
                                                               "cannot write: full")
        assert cat.keyframes(sid) == []
        assert cat.remove_segment(p) and cat.segments() == [] and not cat.remove_segment(p)


def test_a_writers_segments_are_indexed(tmp_path: Path) -> None:
    with Catalog(tmp_path / "catalog.db") as cat:
        def register(info: SegmentInfo) -> None:
            cat.add_segment(info)

        writer = SegmentWriter(tmp_path, "north", "main", segment_seconds=1.0, fsync=False,
                               on_segment=register)
        for unit in encoded_units(seconds=3.0):
            writer.write(unit)
        writer.close()
        rows = cat.segments("north", "main")
        assert len(rows) == 3 and sum(r.frames for r in rows) == 90
        assert all(r.path.exists() and r.bytes == r.path.stat().st_size for r in rows)
        assert all(len(cat.keyframes(r.id)) >= 1 for r in rows)
        (cov,) = cat.coverage_all()
        assert cov.gaps == () and len(cov.intervals) == 1 and cov.frames == 90


def test_coverage_is_intervals_with_the_gaps_between_them(tmp_path: Path) -> None:
    with Catalog(tmp_path / "catalog.db") as cat:
        for i, (a, b) in enumerate([(0, 2), (2, 4), (10, 12), (12, 13), (20, 21)]):
            cat.add_segment(segment(tmp_path / f"{i}.mp4", T0 + a * S, T0 + b * S))
        cat.add_segment(segment(tmp_path / "sub.mp4", T0, T0 + 30 * S, stream="sub"))
        cov = cat.coverage("north", "main")
        assert cov.intervals == (Interval(T0, T0 + 4 * S), Interval(T0 + 10 * S, T0 + 13 * S),
                                 Interval(T0 + 20 * S, T0 + 21 * S))
        assert cov.gaps == (Interval(T0 + 4 * S, T0 + 10 * S),
                            Interval(T0 + 13 * S, T0 + 20 * S))
        assert cov.segments == 5
        assert cat.coverage("north", "sub").gaps == ()
        assert cat.streams() == [("north", "main"), ("north", "sub")]
        clipped = cat.coverage("north", "main", start_ns=T0 + 3 * S, end_ns=T0 + 11 * S)
        assert clipped.intervals == (Interval(T0 + 3 * S, T0 + 4 * S),
                                     Interval(T0 + 10 * S, T0 + 11 * S))
        joined = cat.coverage("north", "main", join_ns=7 * S)
        assert joined.intervals == (Interval(T0, T0 + 21 * S),) and joined.gaps == ()
        assert cat.coverage("south", "main").intervals == ()


def test_bus_logs(tmp_path: Path) -> None:
    with Catalog(tmp_path / "catalog.db") as cat:
        cat.add_bus_log(tmp_path / "b1.mcap", first_ns=T0, last_ns=T0 + 60 * S, messages=10,
                        size=999)
        cat.add_bus_log(tmp_path / "b2.mcap", first_ns=None, last_ns=None, messages=0, size=40)
        cat.add_bus_log(tmp_path / "b1.mcap", first_ns=T0, last_ns=T0 + 50 * S, messages=8,
                        size=900)
        logs = cat.bus_logs()
        assert [(r.path.name, r.messages) for r in logs] == [("b2.mcap", 0), ("b1.mcap", 8)]
        assert [r.path.name for r in cat.bus_logs(start_ns=T0 + 55 * S)] == ["b2.mcap"]
        assert cat.bus_log_paths() == {tmp_path / "b1.mcap", tmp_path / "b2.mcap"}


def test_sessions_and_marks(tmp_path: Path) -> None:
    db = tmp_path / "catalog.db"
    with Catalog(db) as cat:
        cat.add_mark(T0, "before any session", "cmdr")
        s = cat.start_session("  Steel plant drill ", T0 + S)
        assert s.name == "Steel plant drill" and s.open
        with pytest.raises(CatalogError, match="still open"):
            cat.start_session("another", T0 + 2 * S)
        with pytest.raises(CatalogError, match="still open"):
            cat.release_session(s.id)
        m = cat.add_mark(T0 + 3 * S, "smoke on the roof", "cmdr")
        assert m.session_id == s.id
        done = cat.stop_session(T0 + 9 * S)
        assert done is not None and done.end_ns == T0 + 9 * S and not done.released
        assert cat.stop_session(T0 + 10 * S) is None
        assert cat.release_session(s.id).released
        with pytest.raises(CatalogError, match="needs a name"):
            cat.start_session("  ", T0)
    with Catalog(db) as again:  # all of it is on disk
        assert [x.name for x in again.sessions()] == ["Steel plant drill"]
        assert again.current_session() is None
        assert [x.note for x in again.marks(session_id=s.id)] == ["smoke on the roof"]
        assert len(again.marks()) == 2


def test_wal_and_writers_in_many_threads(tmp_path: Path) -> None:
    db = tmp_path / "catalog.db"
    with Catalog(db) as cat:
        def register(n: int) -> None:
            for i in range(50):
                cat.add_segment(segment(tmp_path / f"{n}-{i}.mp4", T0 + i * S, T0 + (i + 1) * S,
                                        camera=f"cam{n}", keyframes=(Keyframe(T0, 0, 1),)))

        threads = [threading.Thread(target=register, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert len(cat.segments()) == 200
        # Another process's reader (here another connection) sees it, in WAL mode.
        other = sqlite3.connect(db)
        try:
            assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            assert other.execute("SELECT count(*) FROM keyframes").fetchone()[0] == 200
        finally:
            other.close()
        assert all(cat.coverage(f"cam{n}", "main").gaps == () for n in range(4))


def test_a_file_that_is_not_a_catalog_is_one_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "catalog.db"
    bad.write_bytes(b"this is not SQLite at all" * 100)
    with pytest.raises(CatalogError, match=r"catalog\.db: not a usable recording catalog"):
        Catalog(bad)
    with pytest.raises(CatalogError, match="cannot open"):
        Catalog(tmp_path / "catalog.db" / "below-a-file.db")


def test_time_base_is_kept(tmp_path: Path) -> None:
    with Catalog(tmp_path / "catalog.db") as cat:
        info = segment(tmp_path / "a.mp4", T0, T0 + S)
        assert info.time_base == Fraction(1, 90_000)
        cat.add_segment(info)
        (row,) = cat.segments()
        assert row.duration == 90_000 and row.stream_start == 0
