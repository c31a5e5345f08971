"""What a crash or a stopped recorder left in a recordings directory, made whole and indexed.

At start the recorder (and `edge record reindex`) takes the directory's lock
(``recorder.lock``, ``flock``: neither may cut a file the other is still writing,
and two recorders never share a directory), then :func:`recover_files`: every
``.mp4`` the catalog does not know is cut after its last complete fragment and
registered from its fragment index (one with no complete fragment holds no
picture and is deleted); every unknown ``.mcap`` is recovered and registered.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import av

from edge.recorder.bus_log import BusLogError, read, recover
from edge.recorder.catalog import Catalog, CatalogError
from edge.recorder.layout import BUS_DIR, VIDEO_DIR, parse_utc_name
from edge.recorder.mp4_repair import Mp4FormatError, read_index, repair
from edge.recorder.mp4_segment import (
    TIME_BASE,
    Keyframe,
    SegmentInfo,
)

log = logging.getLogger(__name__)

LOCK_FILE = "recorder.lock"


def one_line(e: BaseException) -> str:
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


def unlock_recordings(fd: int | None) -> None:
    if fd is not None:
        with contextlib.suppress(OSError):
            os.close(fd)


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
            done.problems.append(f"{path}: {one_line(e)}")
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
            done.problems.append(f"{path}: {one_line(e)}")
    return done


# ----------------------------------------------------------------------------- video


