"""Recordings for the retention tests, written by the recorder's own writers and registered
as the recorder registers them; a small real filesystem to fill; the catalog checked
against the files."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

from drivers.mavlink.dialect import MAVLink
from edge.bus import envelope
from edge.bus.messages import DroneTelemetry
from edge.recorder.bus_log import BusLogWriter
from edge.recorder.catalog import Catalog
from edge.recorder.layout import BUS_DIR, TLOG_DIR, VIDEO_DIR
from edge.recorder.mp4_segment import SegmentInfo, SegmentWriter
from edge.recorder.tlog import TlogWriter
from edge.recorder.tlog_thread import tlog_name
from tests.support import require
from tests.support.media import START_NS, encoded_units

S = 1_000_000_000


def record_video(root: Path, catalog: Catalog, seconds: float, *, camera: str = "north",
                 segment_seconds: float = 1.0, start_ns: int = START_NS,
                 keep_open: bool = False) -> tuple[list[SegmentInfo], SegmentWriter]:
    """`seconds` of a real H.264 camera (a keyframe a second) into segment files under
    root/video, each registered in `catalog` as it closes. With `keep_open` the writer is
    left open: its last segment is on disk, being written, not in the catalog."""
    done: list[SegmentInfo] = []

    def closed(info: SegmentInfo) -> None:
        catalog.add_segment(info)
        done.append(info)

    writer = SegmentWriter(root / VIDEO_DIR, camera, "main", segment_seconds=segment_seconds,
                           fsync=False, on_segment=closed)
    for unit in encoded_units("h264", seconds, start_ns=start_ns):
        writer.write(unit)
    if not keep_open:
        writer.close()
    return done, writer


def record_bus_logs(root: Path, catalog: Catalog, seconds: int, *, start_ns: int = START_NS,
                    per_second: int = 20) -> list[Path]:
    """One bus log a second for `seconds`, `per_second` real envelopes each, registered."""
    directory = root / BUS_DIR
    directory.mkdir(parents=True, exist_ok=True)
    writer = BusLogWriter()
    paths = []
    for s in range(seconds):
        t0 = start_ns + s * S
        path = directory / f"{t0}.mcap"
        writer.open(path)
        for i in range(per_second):
            frames = envelope.encode("drone/alpha/telemetry", DroneTelemetry(lat=i / 7), "d", i)
            writer.write(frames, t0 + i * S // per_second)
        done = writer.close()
        assert done is not None
        catalog.add_bus_log(done.path, first_ns=done.first_ns, last_ns=done.last_ns,
                            messages=done.messages, size=done.size)
        paths.append(path)
    return paths


def record_tlogs(root: Path, link: str, starts_ns: list[int], *, seconds: int = 1) -> list[Path]:
    """A real tlog per start under root/mavlink/<link>/, named as the drone service names
    them, `seconds` of heartbeats each, its modification time where its last frame is."""
    directory = root / TLOG_DIR / link
    directory.mkdir(parents=True, exist_ok=True)
    enc = MAVLink(None, srcSystem=1, srcComponent=1)
    paths = []
    for start in starts_ns:
        path = directory / tlog_name(start)
        with TlogWriter(path) as writer:
            for i in range(seconds * 4 + 1):
                frame = bytes(enc.heartbeat_encode(2, 3, 81, i, 4).pack(enc))
                writer.write(frame, start + i * S // 4)
        end = start + seconds * S
        os.utime(path, ns=(end, end))
        paths.append(path)
    return paths


def recorded_files(root: Path) -> set[Path]:
    """Every video segment and bus log under `root`."""
    return {p for pattern in (f"{VIDEO_DIR}/*/*/*.mp4", f"{BUS_DIR}/*.mcap")
            for p in root.glob(pattern)}


def catalog_disagreements(root: Path, catalog: Catalog) -> tuple[set[Path], set[Path]]:
    """(rows whose file is not there, files without a row), read through the catalog."""
    rows = catalog.segment_paths() | catalog.bus_log_paths()
    files = recorded_files(root)
    return {p for p in rows if not p.is_file()}, files - rows


@contextlib.contextmanager
def small_disk(where: Path, size: str) -> Iterator[Path]:
    """A tmpfs of `size` mounted at `where` (root only; skipped off CI without it)."""
    where.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                          capture_output=True, text=True, check=False)
    require(done.returncode == 0, f"cannot mount a tmpfs: {done.stderr.strip()}")
    try:
        yield where
    finally:
        # Lazy: a file a failed assertion left open must not keep the mount behind.
        subprocess.run(["umount", "--lazy", str(where)], check=False)


def free_percent(path: Path) -> float:
    st = os.statvfs(path)
    return 100 * st.f_bavail / st.f_blocks
