"""One camera stream's media-plane units remuxed into fragmented MP4 segment files.

`SegmentWriter` is synchronous and blocking (it writes files): the recorder service
runs each writer in a thread of its own and feeds it `MediaFrame`s in the order the
subscriber hands them on. One thread calls `write`, `close_if_idle` and `close`;
`counters` and `current` may be read from any thread (they return snapshots).
The units are remuxed by PyAV, never decoded or re-encoded.

**Files.** ``<directory>/<camera>/<stream>/<UTC start>.mp4``, the start being the
wall-clock receipt time of the segment's first unit as ``20261201T184800.123Z``
(names sort by time; a name already taken gets ``_1``, ``_2``... before ``.mp4``).
Each file is fragmented MP4 (``frag_keyframe+empty_moov+default_base_moof``) with
``frag_duration`` set, so a fragment holds at most `fragment_seconds` of video even
when the GOP is longer: a ``kill -9`` or power cut loses the fragment being
filled, no more (`mp4_repair.repair` cuts the torn tail). Each fragment is flushed to
the file as it is completed (and ``fdatasync``-ed unless ``fsync=False``). H.265 is
tagged ``hvc1``, which Chromium, Safari and QuickTime need; H.264 is ``avc1``. Width
and height come from the parameter sets, read by FFmpeg's parser (no picture is
decoded).

**Segments.** A segment starts at a keyframe that carries its parameter sets, and a
new one begins at the first keyframe at or after `segment_seconds` of stream time,
so every file starts with a keyframe. A new segment also starts at a keyframe with
another codec or picture size, and after a gap: a unit received more than
`max_gap_seconds` after the previous one ends the segment (the camera was down, or
nothing reached the recorder), so a segment covers continuous recording and gaps
lie between segments. Units that cannot be written because no keyframe has
opened the way (the very first units, after an epoch change, a sequence gap, a codec
change, a gap or a write error) are dropped and counted, never written.

**Timestamps.** One timeline per writer, in `TIME_BASE` (1/90000 s) ticks from the
writer's first unit, always increasing. Between consecutive units it advances by
the camera's own spacing (dts, else pts, converted from the unit's time base) while
the epoch is the same, both timestamps are present and the step is positive and no
longer than `max_gap_seconds`; otherwise (a camera reconnect or restart, missing
timestamps, a jump) by the wall-clock spacing of their `received_ns`, to the nearest
tick and at least one. Each file's timestamps start at 0 (it plays alone, as any MP4
does), and its `SegmentInfo.stream_start` says where it sits on the writer's
timeline. A unit's duration is known when the next one arrives (the writer holds one
unit back), so a segment cut at a keyframe lasts exactly until the next segment's
first frame: ``next.stream_start == prev.stream_start + prev.duration`` and
``next.first_wall_ns == prev.end_wall_ns`` whenever the camera ran continuously. The
last frame before a gap or `close` lasts as long as the step before it.

**Reports.** Every segment file the writer closes, cleanly or after an error, is
passed once to `on_segment` (in the writer's thread) as a frozen `SegmentInfo`;
`current` describes the open one.

**Errors.** A failing write (disk full, EIO) closes what can be closed, cuts the
segment back to its last complete fragment (`mp4_repair.repair`), reports it with
`SegmentInfo.error` set (or deletes it if no fragment was complete), and raises
`RecordingWriteError` naming the file and the OS error. The writer is then waiting
for a keyframe, as at the start: the next keyframe opens a fresh segment, which
succeeds once the disk has room again.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path

import av
import av.container
import av.stream

from edge.media.wire import MediaFrame
from edge.recorder.layout import new_file
from edge.recorder.mp4_repair import Mp4FormatError, read_index, repair

log = logging.getLogger(__name__)

TIME_BASE = Fraction(1, 90_000)
_HZ = 90_000
_MOVFLAGS = "frag_keyframe+empty_moov+default_base_moof"
# Codec names on the media plane → FFmpeg's codec names.
_CODECS = {"h264": "h264", "h265": "hevc", "hevc": "hevc"}
# Parameter-set NAL unit types: H.264 SPS, PPS; H.265 VPS, SPS, PPS.
_PARAMETER_SETS = {"h264": frozenset({7, 8}), "hevc": frozenset({32, 33, 34})}
_SAFE_LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]*")


class RecordingWriteError(Exception):
    """A segment file could not be written; `path` names it, `error` is the cause."""

    def __init__(self, path: Path, error: BaseException) -> None:
        self.path = path
        self.error = error
        self.errno: int | None = getattr(error, "errno", None)
        detail = str(error) if isinstance(error, OSError) else f"{type(error).__name__}: {error}"
        super().__init__(f"cannot write {path}: {detail}")


@dataclass(frozen=True, slots=True)
class Keyframe:
    """A keyframe in a segment: its receipt time, its pts in the file (`TIME_BASE` ticks
    from the file's start) and the byte offset of the ``moof`` of the fragment it starts."""

    wall_ns: int
    pts: int
    offset: int


@dataclass(frozen=True, slots=True)
class SegmentInfo:
    """One segment file, as far as it was written (`closed` False while it is open).

    Wall-clock times are the camera's `received_ns`. `stream_start` and `duration` are
    `TIME_BASE` ticks on the writer's timeline: `stream_start` is where the file's
    time 0 lies on it, `duration` runs to the end of the last frame (while open: to the
    start of the last frame received). `end_wall_ns` is where the next segment begins
    when the camera ran on without a gap, else the last frame's receipt plus its
    duration. `error` is set when a write error ended the segment; the file was then cut
    to its last complete fragment and the counts describe what is left in it.
    """

    path: Path
    camera: str
    stream: str
    codec: str  # "h264" or "h265"
    width: int
    height: int
    first_wall_ns: int
    last_wall_ns: int
    end_wall_ns: int
    stream_start: int
    duration: int
    frames: int
    size: int  # bytes in the file (while open: the fragments completed so far)
    keyframes: tuple[Keyframe, ...]
    closed: bool
    error: str | None = None
    time_base: Fraction = TIME_BASE


@dataclass(frozen=True, slots=True)
class WriterCounters:
    units_written: int  # handed to the muxer
    dropped_before_keyframe: int  # waiting for a keyframe to start or resume from
    dropped_invalid: int  # unknown codec, or a keyframe without readable parameter sets
    write_errors: int
    segments: int  # segment files closed (cleanly or after an error)


@dataclass(slots=True)
class _Unit:
    """A unit accepted onto the timeline, held until the next one gives its duration."""

    data: bytes
    keyframe: bool
    dts: int  # on the writer's timeline
    cto: int  # composition offset: pts - dts
    wall_ns: int


@dataclass(frozen=True, slots=True)
class _Format:
    codec: str  # FFmpeg's name
    width: int
    height: int
    extradata: bytes


@dataclass(slots=True)
class _Segment:
    path: Path
    file: _SegmentFile
    container: av.container.OutputContainer
    stream: av.stream.Stream
    format: _Format
    stream_start: int
    first_wall_ns: int
    frames: int = 0
    last_wall_ns: int = 0
    last_dts: int = 0  # of the last unit muxed, from the file's start
    units: list[tuple[int, int]] = field(default_factory=list)  # (wall ns, dts) muxed
    keyframes: list[Keyframe] = field(default_factory=list)


class _SegmentFile:
    """The file FFmpeg writes through: every byte reaches the OS before `write` returns
    (a short write is retried, an error raises), and its position is the byte offset
    the next fragment will start at."""

    def __init__(self, path: Path) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        self.pos = 0
        self.unsynced = 0  # bytes written since the last fdatasync

    def write(self, data: bytes) -> int:
        view = memoryview(data)
        while view:
            n = os.write(self.fd, view)
            view = view[n:]
            self.pos += n
        self.unsynced += len(data)
        return len(data)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self.pos = os.lseek(self.fd, offset, whence)
        return self.pos

    def tell(self) -> int:
        return self.pos

    def sync(self) -> None:
        os.fdatasync(self.fd)
        self.unsynced = 0

    def close(self) -> None:
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            os.close(fd)


def _label(kind: str, value: str) -> str:
    if not _SAFE_LABEL.fullmatch(value):
        raise ValueError(f"{kind} {value!r} cannot name a directory: use letters, digits, "
                         f"'.', '_', '@' and '-', starting with a letter or digit")
    return value


def parameter_sets(codec: str, data: bytes) -> bytes:
    """The parameter-set NAL units leading an Annex-B access unit, as Annex-B (4-byte
    start codes); empty if it has none. `codec` is FFmpeg's name (h264, hevc). Stops at
    the first picture (VCL) NAL unit, so a large keyframe is not scanned through."""
    wanted = _PARAMETER_SETS[codec]
    h264 = codec == "h264"
    found: list[bytes] = []
    i = data.find(b"\x00\x00\x01")
    while i >= 0 and i + 3 < len(data):
        start = i + 3
        header = data[start]
        kind = header & 0x1F if h264 else (header >> 1) & 0x3F
        if (1 <= kind <= 5) if h264 else kind < 32:  # a slice: the picture has begun
            break
        j = data.find(b"\x00\x00\x01", start)
        if kind in wanted:
            found.append(data[start:len(data) if j < 0 else j].rstrip(b"\x00"))
        i = j
    return b"".join(b"\x00\x00\x00\x01" + nal for nal in found)


def picture_size(codec: str, data: bytes) -> tuple[int, int] | None:
    """Width and height from a keyframe's parameter sets, by FFmpeg's parser (it reads
    the headers; nothing is decoded). None if they cannot be read."""
    ctx = av.CodecContext.create(codec, "r")
    assert isinstance(ctx, av.VideoCodecContext)
    try:
        ctx.parse(data)
        ctx.parse(None)  # the parser emits an access unit only once it sees the end
    except av.FFmpegError:
        return None
    width, height = ctx.width, ctx.height
    return (width, height) if width > 0 and height > 0 else None


class SegmentWriter:
    """Fragmented MP4 segments of one camera stream; see the module docstring."""

    def __init__(self, directory: str | os.PathLike[str], camera: str, stream: str, *,
                 segment_seconds: float = 60.0, fragment_seconds: float = 1.0,
                 max_gap_seconds: float = 2.0, fsync: bool = True,
                 on_segment: Callable[[SegmentInfo], None] | None = None) -> None:
        if not segment_seconds > 0:
            raise ValueError(f"segment_seconds must be positive, not {segment_seconds}")
        if not 0 < fragment_seconds <= segment_seconds:
            raise ValueError(f"fragment_seconds must be positive and at most segment_seconds, "
                             f"not {fragment_seconds}")
        if not max_gap_seconds > 0:
            raise ValueError(f"max_gap_seconds must be positive, not {max_gap_seconds}")
        self.camera = _label("camera", camera)
        self.stream = _label("stream", stream)
        self.directory = Path(directory) / camera / stream
        self.on_segment = on_segment
        self._segment_ticks = round(segment_seconds * _HZ)
        self._fragment_us = round(fragment_seconds * 1_000_000)
        self._max_gap_ticks = round(max_gap_seconds * _HZ)
        self._max_gap_ns = round(max_gap_seconds * 1_000_000_000)
        self._fsync = fsync
        self._segment: _Segment | None = None
        self._held: _Unit | None = None
        # The last unit accepted onto the timeline (written or held), for continuity.
        self._prev: MediaFrame | None = None
        self._prev_dts = 0
        self._last_step = _HZ // 30
        self._need_keyframe = True
        self._formats: dict[tuple[str, bytes], _Format | None] = {}
        self._written = self._dropped_key = self._dropped_invalid = 0
        self._errors = self._segments = 0

    # -- what the service reads ---------------------------------------------------------

    @property
    def counters(self) -> WriterCounters:
        return WriterCounters(self._written, self._dropped_key, self._dropped_invalid,
                              self._errors, self._segments)

    @property
    def current(self) -> SegmentInfo | None:
        """The open segment as written so far, or None."""
        seg = self._segment
        if seg is None:
            return None
        held = self._held
        last_wall = held.wall_ns if held is not None else seg.last_wall_ns
        duration = held.dts - seg.stream_start if held is not None else seg.last_dts
        return self._info(seg, frames=seg.frames + (held is not None), last_wall_ns=last_wall,
                          end_wall_ns=last_wall, duration=duration, closed=False)

    # -- feeding ------------------------------------------------------------------------

    def write(self, frame: MediaFrame) -> None:
        """Take the next unit of the stream. Raises `RecordingWriteError` when the file
        cannot be written (after reporting the segment it ended, see the module docstring);
        the writer stays usable."""
        codec = _CODECS.get(frame.codec)
        if codec is None:
            self._dropped_invalid += 1
            return
        prev = self._prev
        if prev is not None and (frame.epoch != prev.epoch or frame.seq != prev.seq + 1
                                 or _CODECS.get(prev.codec) != codec):
            self._need_keyframe = True
        if self._need_keyframe and not frame.keyframe:
            self._dropped_key += 1
            return
        gap = prev is not None and frame.received_ns - prev.received_ns > self._max_gap_ns
        step = self._step(prev, frame, gap)
        dts = self._prev_dts + step if prev is not None else 0
        fmt: _Format | None = None
        if frame.keyframe:
            fmt = self._format(codec, frame.data)
        seg = self._segment
        cut = seg is None or gap or (frame.keyframe and (
            codec != seg.format.codec
            or (fmt is not None and (fmt.width, fmt.height) != (seg.format.width,
                                                                 seg.format.height))
            or dts - seg.stream_start >= self._segment_ticks))
        if seg is not None and cut:
            # Exact when the camera ran on: the held unit lasts until this one.
            self._finish(seg, step if not gap else self._last_step,
                         frame.received_ns if not gap else None)
        if cut and (not frame.keyframe or fmt is None):
            # After a gap (or with no parameter sets to start a file from) the segment
            # can only begin at a keyframe that carries them.
            if frame.keyframe:
                self._dropped_invalid += 1
            else:
                self._dropped_key += 1
            self._need_keyframe = True
            return
        self._accept(frame, dts, step)
        unit = _Unit(frame.data, frame.keyframe, dts, self._cto(frame), frame.received_ns)
        if cut:
            assert fmt is not None
            self._open(fmt, unit)
        else:
            self._push(unit)

    def close_if_idle(self, now_ns: int) -> SegmentInfo | None:
        """Close the open segment if no unit arrived for `max_gap_seconds` before `now_ns`
        (wall clock, as `received_ns`), so that a stopped camera's last fragment reaches
        the disk; the next unit then starts a new segment at a keyframe. Returns it."""
        seg = self._segment
        if seg is None or self._prev is None or now_ns - self._prev.received_ns <= self._max_gap_ns:
            return None
        info = self._finish(seg, self._last_step, None)
        self._need_keyframe = True
        return info

    def close(self) -> SegmentInfo | None:
        """Finish the open segment (its last frame lasts as long as the one before it) and
        return it. The writer may be fed again; it starts a new segment at a keyframe."""
        seg = self._segment
        if seg is None:
            return None
        info = self._finish(seg, self._last_step, None)
        self._need_keyframe = True
        return info

    # -- the timeline -------------------------------------------------------------------

    def _step(self, prev: MediaFrame | None, frame: MediaFrame, gap: bool) -> int:
        if prev is None:
            return 0
        if not gap and frame.epoch == prev.epoch:
            now, before = _camera_ticks(frame), _camera_ticks(prev)
            if now is not None and before is not None and 0 < now - before <= self._max_gap_ticks:
                return now - before
        return max(1, _wall_ticks(frame.received_ns - prev.received_ns))

    @staticmethod
    def _cto(frame: MediaFrame) -> int:
        if frame.pts is None or frame.dts is None or frame.pts <= frame.dts:
            return 0
        return _ticks(frame.pts - frame.dts, frame.time_base)

    def _accept(self, frame: MediaFrame, dts: int, step: int) -> None:
        if self._prev is not None and step > 0:
            self._last_step = step
        self._prev, self._prev_dts = frame, dts
        self._need_keyframe = False

    def _format(self, codec: str, data: bytes) -> _Format | None:
        extradata = parameter_sets(codec, data)
        if not extradata:
            return None
        key = (codec, extradata)
        if key not in self._formats:
            size = picture_size(codec, data)
            if len(self._formats) > 16:
                self._formats.clear()  # a camera reconfigured over and over: keep it small
            self._formats[key] = None if size is None else _Format(codec, *size, extradata)
        return self._formats[key]

    # -- files --------------------------------------------------------------------------

    def _new_path(self, wall_ns: int) -> Path:
        return new_file(self.directory, wall_ns, ".mp4")

    def _open(self, fmt: _Format, first: _Unit) -> None:
        path: Path | None = None
        file: _SegmentFile | None = None
        container: av.container.OutputContainer | None = None
        try:
            path = self._new_path(first.wall_ns)
            file = _SegmentFile(path)
            container = av.open(file, "w", format="mp4", options={
                "movflags": _MOVFLAGS,
                "frag_duration": str(self._fragment_us),
                # Every fragment reaches the file as soon as the muxer completes it, not
                # when AVIO's buffer happens to fill.
                "flush_packets": "1",
            })
            container.metadata["creation_time"] = (
                dt.datetime.fromtimestamp(first.wall_ns / 1e9, dt.UTC)
                .strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
            stream = _add_stream(container, fmt)
        except Exception as e:
            self._errors += 1
            self._need_keyframe = True
            if container is not None:
                with contextlib.suppress(Exception):
                    container.close()
            if file is not None:
                file.close()
                assert path is not None
                with contextlib.suppress(OSError):
                    path.unlink()
            raise RecordingWriteError(path or self.directory, e) from e
        self._segment = _Segment(path, file, container, stream, fmt, first.dts, first.wall_ns)
        self._held = first

    def _push(self, unit: _Unit) -> None:
        seg, held = self._segment, self._held
        assert seg is not None
        if held is not None:
            self._mux(seg, held, unit.dts - held.dts)
        self._held = unit

    def _mux(self, seg: _Segment, unit: _Unit, duration: int) -> None:
        packet = av.Packet(unit.data)
        dts = unit.dts - seg.stream_start
        packet.dts = dts
        packet.pts = dts + unit.cto
        packet.duration = max(1, duration)
        packet.time_base = TIME_BASE
        packet.stream = seg.stream
        packet.is_keyframe = unit.keyframe
        try:
            seg.container.mux(packet)
            if self._fsync and seg.file.unsynced:
                seg.file.sync()
        except Exception as e:
            self._fail(seg, e)
        # A keyframe starts a fragment (frag_keyframe), and the muxer has just flushed the
        # one before it: the file ends where this keyframe's moof will be written.
        if unit.keyframe:
            seg.keyframes.append(Keyframe(unit.wall_ns, dts + unit.cto, seg.file.tell()))
        seg.frames += 1
        seg.units.append((unit.wall_ns, dts))
        seg.last_wall_ns = unit.wall_ns
        seg.last_dts = dts
        self._written += 1

    def _finish(self, seg: _Segment, last_duration: int, next_wall_ns: int | None
                ) -> SegmentInfo:
        """Mux the held unit with `last_duration`, close the file and report it."""
        held, self._held = self._held, None
        if held is not None:
            self._mux(seg, held, last_duration)
        try:
            seg.container.close()
            if self._fsync:
                seg.file.sync()
            seg.file.close()
        except Exception as e:
            self._fail(seg, e)
        self._segment = None
        end_dts = seg.last_dts + max(1, last_duration)
        end_wall = (next_wall_ns if next_wall_ns is not None
                    else seg.last_wall_ns + _ns(max(1, last_duration)))
        info = self._info(seg, frames=seg.frames, last_wall_ns=seg.last_wall_ns,
                          end_wall_ns=end_wall, duration=end_dts, closed=True)
        self._segments += 1
        if self.on_segment is not None:
            self.on_segment(info)
        return info

    def _fail(self, seg: _Segment, error: BaseException) -> None:
        """The file cannot be written: close everything, keep what is whole, report, raise."""
        self._errors += 1
        self._segment = None
        self._held = None
        self._need_keyframe = True
        with contextlib.suppress(Exception):
            seg.container.close()  # flushes what it can; the file may be torn either way
        with contextlib.suppress(OSError):
            seg.file.close()
        message = str(RecordingWriteError(seg.path, error))
        info: SegmentInfo | None = None
        try:
            kept = repair(seg.path)
            index = read_index(seg.path)
        except (OSError, Mp4FormatError) as e:
            log.warning("%s/%s: could not repair %s after a write error: %s",
                        self.camera, self.stream, seg.path, e)
        else:
            if not kept.playable:
                with contextlib.suppress(OSError):
                    seg.path.unlink()
            else:
                frames = index.samples
                last = index.fragments[-1]
                file_end = last.decode_time + last.duration
                last_wall, last_dts = seg.units[min(frames, len(seg.units)) - 1]
                info = replace(
                    self._info(seg, frames=frames, last_wall_ns=last_wall,
                               end_wall_ns=last_wall + _ns(file_end - last_dts),
                               duration=file_end, closed=True, size=kept.size_after),
                    keyframes=tuple(k for k in seg.keyframes if k.offset < kept.size_after),
                    error=message)
        if info is not None:
            self._segments += 1
            if self.on_segment is not None:
                self.on_segment(info)
        raise RecordingWriteError(seg.path, error) from error

    def _info(self, seg: _Segment, *, frames: int, last_wall_ns: int, end_wall_ns: int,
              duration: int, closed: bool, size: int | None = None) -> SegmentInfo:
        return SegmentInfo(
            seg.path, self.camera, self.stream,
            "h265" if seg.format.codec == "hevc" else "h264",
            seg.format.width, seg.format.height, seg.first_wall_ns, last_wall_ns, end_wall_ns,
            seg.stream_start, duration, frames,
            seg.file.tell() if size is None else size, tuple(seg.keyframes), closed)


def _ticks(value: int, time_base: Fraction) -> int:
    return value * time_base.numerator * _HZ // time_base.denominator


def _wall_ticks(ns: int) -> int:
    return (ns * _HZ + 500_000_000) // 1_000_000_000  # rounded: 1/30 s is 3000, not 2999


def _ns(ticks: int) -> int:
    return ticks * 1_000_000_000 // _HZ


def _camera_ticks(frame: MediaFrame) -> int | None:
    value = frame.dts if frame.dts is not None else frame.pts
    return None if value is None else _ticks(value, frame.time_base)


def _add_stream(container: av.container.OutputContainer, fmt: _Format) -> av.stream.Stream:
    """A video stream for already-encoded packets whose codec tag can be set.

    A stream made from a template gets a codec context that PyAV never opens (a plain
    `add_stream` would open an encoder at the first packet, and `add_mux_stream` has no
    context to carry the codec tag). The template comes from a throw-away container;
    its encoder is only looked up, never opened.
    """
    scratch = av.open(io.BytesIO(), "w", format="mp4")
    try:
        template = scratch.add_stream(fmt.codec)
        stream = container.add_stream_from_template(template, opaque=True)
    finally:
        scratch.close()
    ctx = stream.codec_context
    assert isinstance(ctx, av.VideoCodecContext)
    ctx.width = fmt.width
    ctx.height = fmt.height
    ctx.extradata = fmt.extradata
    if fmt.codec == "hevc":
        ctx.codec_tag = "hvc1"
    stream.time_base = TIME_BASE
    return stream


