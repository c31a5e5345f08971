"""A drone link's raw MAVLink over a time range, as one `.tlog` (QGroundControl, MAVProxy).

The drone service logs its whole link (every vehicle on it, both directions) in hourly
files under ``mavlink/<link>/``; a drone's id is ``<link>-<sysid>``. The export takes
the records of every file of that link whose time is in [start_ns, end_ns), in file
order, and writes them untouched (timestamp and frame, byte for byte, signed frames
with their signatures): the link as it was, with the other vehicles and the ground
station's side on it, because a tlog replayed in QGroundControl or MAVProxy is a link,
not one vehicle's messages (a filtered one would lose our heartbeats, the commands and
anything relayed). The sysid only has to be heard on the link in that range: an id
that is not is bad input. A torn tail (power cut) is left out, as
:func:`edge.recorder.tlog.valid_length` cuts it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import mmap
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from edge.bus.topics import parse_drone_id
from edge.export import ExportError, Progress, no_progress
from edge.export.times import local_iso
from edge.recorder.layout import TLOG_DIR
from edge.recorder.tlog import frame_length, valid_length

_STAMP = struct.Struct(">Q")
_MAGIC_V2 = 0xFD


@dataclass(frozen=True, slots=True)
class TlogResult:
    path: Path
    drone_id: str
    link: str
    sysid: int
    start_ns: int
    end_ns: int
    records: int  # all the link's frames in the range
    from_drone: int  # of which sent by the drone (its sysid)
    files: int  # hourly tlogs read
    bytes: int
    first_ns: int | None  # time of the first and last record written
    last_ns: int | None

    def json(self) -> dict[str, object]:
        return {"path": str(self.path), "drone_id": self.drone_id, "link": self.link,
                "sysid": self.sysid, "start_ns": self.start_ns, "end_ns": self.end_ns,
                "records": self.records, "from_drone": self.from_drone, "files": self.files,
                "bytes": self.bytes, "first_ns": self.first_ns, "last_ns": self.last_ns}


def sender(frame: bytes | memoryview) -> int:
    """The sysid that sent a raw MAVLink frame (v1 or v2)."""
    return frame[5] if frame[0] == _MAGIC_V2 else frame[3]


def _name_ns(path: Path) -> int | None:
    try:
        t = dt.datetime.strptime(path.stem[:16], "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
    except ValueError:
        return None
    return int(t.timestamp()) * 1_000_000_000


def link_files(root: Path, link: str, start_ns: int, end_ns: int) -> list[Path]:
    """The link's tlogs that may hold records in [start_ns, end_ns), oldest first. A file
    holds what came from its name's time (to the second) until the next one began."""
    directory = root / TLOG_DIR / link
    files = sorted(directory.glob("*.tlog")) if directory.is_dir() else []
    starts = [_name_ns(p) for p in files]
    keep = []
    for i, path in enumerate(files):
        begins = starts[i]
        following = starts[i + 1] if i + 1 < len(files) else None
        if begins is not None and begins >= end_ns:
            continue
        if following is not None and following + 1_000_000_000 <= start_ns:
            continue
        keep.append(path)
    return keep


def records(path: Path) -> Iterator[tuple[int, bytes]]:
    """(time ns, whole record: stamp and frame) of each whole record of a tlog."""
    good = valid_length(path)
    if good == 0:
        return
    with open(path, "rb") as f, mmap.mmap(f.fileno(), good, access=mmap.ACCESS_READ) as data:
        view = memoryview(data)
        try:
            at = 0
            while at + _STAMP.size + 3 <= good:
                length = frame_length(view[at + 8:at + 11])
                if length is None:
                    break
                (us,) = _STAMP.unpack_from(view, at)
                yield us * 1000, bytes(view[at:at + 8 + length])
                at += 8 + length
        finally:
            view.release()


def export_tlog(root: Path, drone_id: str, start_ns: int, end_ns: int, out: Path,
                progress: Progress = no_progress) -> TlogResult:
    """Write the link's records of [start_ns, end_ns) to `out`; ExportError for bad input."""
    parsed = parse_drone_id(drone_id)
    if parsed is None:
        raise ExportError(f"{drone_id!r} is not a drone id (LINK-SYSID, e.g. alpha-1)")
    link, sysid = parsed
    if end_ns <= start_ns:
        raise ExportError(f"the range {local_iso(start_ns)} to {local_iso(end_ns)} is empty")
    if not (root / TLOG_DIR / link).is_dir():
        raise ExportError(f"no MAVLink log of link {link!r} in {root / TLOG_DIR} (is "
                          f"[recorder] enabled for drone@{link}?)")
    files = link_files(root, link, start_ns, end_ns)
    total = sum(p.stat().st_size for p in files) or 1
    tmp = out.with_name(f".{out.name}.part")
    count = mine = done = 0
    first: int | None = None
    last: int | None = None
    try:
        with open(tmp, "wb") as f:
            for path in files:
                for t, record in records(path):
                    if start_ns <= t < end_ns:
                        f.write(record)
                        count += 1
                        mine += sender(record[8:]) == sysid
                        first = t if first is None else first
                        last = t
                done += path.stat().st_size
                progress(done / total, f"{count} records from {path.name}")
            f.flush()
            os.fsync(f.fileno())
        if count == 0:
            raise ExportError(f"link {link!r} logged nothing from {local_iso(start_ns)} to "
                              f"{local_iso(end_ns)}")
        if mine == 0:
            raise ExportError(f"drone {drone_id} was not heard on link {link!r} from "
                              f"{local_iso(start_ns)} to {local_iso(end_ns)}")
        size = tmp.stat().st_size
        os.replace(tmp, out)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return TlogResult(out, drone_id, link, sysid, start_ns, end_ns, count, mine, len(files),
                      size, first, last)
