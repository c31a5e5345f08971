"""One camera stream's recording over a time range, remuxed into one MP4 (never decoded).

**Where it starts.** At the keyframe at or before ``from_ns`` (a picture can only begin
at one), found in the catalog's keyframe index; when the recording starts after
``from_ns``, at its first keyframe. The clip's time 0 is that keyframe.

**Timestamps.** Each segment file starts at 0; the clip lays them end to end: a
segment that continues the one before it (the camera ran on) starts where that one
ends, exactly, and one after a gap (camera or recorder down) starts as much later as
the gap lasted by the wall clock, so the clip keeps real time and the last picture
before a gap stays on screen through it. A change of codec or picture size cannot go
in one MP4 stream: the clip ends before it, and says so.

**Where it ends.** At the first unit received at or after ``to_ns`` (by decode time,
so no reference picture is cut off from what refers to it), or where the recording ends.

**The file.** A plain (not fragmented) MP4 with ``+faststart``: the index (``moov``)
comes first, so Chromium and any player can start playing it before it has all of it,
and FFmpeg reads it as any MP4. H.265 is tagged ``hvc1`` (what Chromium and Safari
need). It is written beside `out` under a temporary name and renamed when complete,
so a failed export leaves no half file.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import av.container
import av.stream

from edge.export import ExportError, Progress, no_progress
from edge.export.times import clock, local_iso
from edge.recorder.catalog import Catalog, KeyframeRow, SegmentRow

TIME_BASE = Fraction(1, 90_000)  # the recorder's, and the clip's
_HZ = 90_000


@dataclass(frozen=True, slots=True)
class ClipResult:
    path: Path
    camera: str
    stream: str
    codec: str
    width: int
    height: int
    start_ns: int  # wall clock of the first picture (the keyframe at or before --from)
    end_ns: int  # wall clock where the last picture ends
    frames: int
    segments: int
    bytes: int
    gaps: int  # gaps in the recording inside the clip (the picture holds through them)
    note: str  # why it ended before --to, if it did

    @property
    def seconds(self) -> float:
        return (self.end_ns - self.start_ns) / 1e9

    def json(self) -> dict[str, object]:
        return {"path": str(self.path), "camera": self.camera, "stream": self.stream,
                "codec": self.codec, "width": self.width, "height": self.height,
                "start_ns": self.start_ns, "end_ns": self.end_ns,
                "duration_s": round(self.seconds, 3), "frames": self.frames,
                "segments": self.segments, "bytes": self.bytes, "gaps": self.gaps,
                "note": self.note}

    def summary(self) -> str:
        return (f"{self.path}: {self.camera}/{self.stream} {self.codec} {self.width}x"
                f"{self.height}, {self.frames} frames, {self.seconds:.3f} s from "
                f"{clock(self.start_ns)} to {clock(self.end_ns)}")


def _ns(ticks: int) -> int:
    return ticks * 1_000_000_000 // _HZ


def _ticks(ns: int) -> int:
    return (ns * _HZ + 500_000_000) // 1_000_000_000


def _start_keyframe(cat: Catalog, seg: SegmentRow, from_ns: int) -> KeyframeRow:
    keys = cat.keyframes(seg.id)
    if not keys:
        raise ExportError(f"{seg.path}: no keyframe indexed (edge record reindex rebuilds "
                          "the index)")
    before = [k for k in keys if k.wall_ns <= from_ns]
    return before[-1] if before else keys[0]


def plan(cat: Catalog, camera: str, stream: str, from_ns: int, to_ns: int
         ) -> tuple[list[SegmentRow], KeyframeRow]:
    """The segments a clip of [from_ns, to_ns) takes and the keyframe it starts at."""
    if to_ns <= from_ns:
        raise ExportError(f"--to ({local_iso(to_ns)}) is not after --from "
                          f"({local_iso(from_ns)})")
    known = cat.streams()
    if not any(c == camera for c, _ in known):
        cams = sorted({c for c, _ in known})
        raise ExportError(f"no recording of camera {camera!r} (recorded: "
                          f"{', '.join(cams) or 'none'})")
    if (camera, stream) not in known:
        have = sorted(s for c, s in known if c == camera)
        raise ExportError(f"camera {camera!r} has no {stream} stream recorded "
                          f"(recorded: {', '.join(have)})")
    segs = cat.segments(camera, stream, start_ns=from_ns, end_ns=to_ns)
    # A segment ending right at from_ns may hold the keyframe before it.
    earlier = [s for s in cat.segments(camera, stream, end_ns=from_ns + 1)
               if s.start_ns <= from_ns and s not in segs]
    if not segs:
        raise ExportError(f"no recording of {camera}/{stream} between {local_iso(from_ns)} "
                          f"and {local_iso(to_ns)}")
    first = segs[0]
    if first.start_ns > from_ns and earlier:
        first = earlier[-1]
        segs.insert(0, first)
    key = _start_keyframe(cat, first, from_ns)
    return segs, key


def export_clip(cat: Catalog, camera: str, stream: str, from_ns: int, to_ns: int,
                out: Path, progress: Progress = no_progress) -> ClipResult:
    """Write the clip of [from_ns, to_ns) to `out`; ExportError for bad input."""
    segs, key = plan(cat, camera, stream, from_ns, to_ns)
    tmp = out.with_name(f".{out.name}.part")
    try:
        result = _write(segs, key, to_ns, out, tmp, progress)
        os.replace(tmp, out)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return result


def _write(segs: list[SegmentRow], key: KeyframeRow, to_ns: int, out: Path, tmp: Path,
           progress: Progress) -> ClipResult:
    first = segs[0]
    try:
        output = av.open(str(tmp), "w", format="mp4", options={"movflags": "+faststart"})
    except (OSError, av.FFmpegError) as e:
        raise ExportError(f"cannot write {out}: {getattr(e, 'strerror', None) or e}") from None
    frames = used = gaps = 0
    note = ""
    ostream: av.stream.Stream | None = None
    shift: int | None = None  # clip time = file time + shift, in ticks
    end = 0  # where the last picture ends, clip time
    prev: SegmentRow | None = None
    span = max(1, to_ns - key.wall_ns)
    try:
        for seg in segs:
            if prev is not None:
                assert shift is not None
                if (seg.codec, seg.width, seg.height) != (first.codec, first.width,
                                                          first.height):
                    note = (f"ends at {clock(seg.start_ns)}: the camera changed to "
                            f"{seg.codec} {seg.width}x{seg.height} there")
                    break
                gap = max(0, seg.start_ns - prev.end_ns)
                gaps += gap > 0
                shift += prev.duration + _ticks(gap)
            copied = _copy(seg, output, ostream, key if prev is None else None, shift, to_ns,
                           frames == 0)
            if copied.shift is None:
                raise ExportError(f"{seg.path}: the keyframe at {clock(key.wall_ns)} the "
                                  "catalog names is not in the file (edge record reindex)")
            ostream, shift = copied.stream, copied.shift
            frames += copied.frames
            used += 1
            end = max(end, copied.end)
            progress(min(1.0, (seg.end_ns - key.wall_ns) / span),
                     f"{frames} frames from {used} segment(s)")
            prev = seg
            if copied.reached_end:
                break
        if frames == 0:
            raise ExportError(f"no picture of {first.camera}/{first.stream} from "
                              f"{local_iso(key.wall_ns)} to {local_iso(to_ns)} could be read")
        output.close()
    except BaseException:
        with contextlib.suppress(Exception):
            output.close()
        raise
    return ClipResult(out, first.camera, first.stream, first.codec, first.width, first.height,
                      key.wall_ns, key.wall_ns + _ns(end), frames, used, tmp.stat().st_size,
                      gaps, note)


@dataclass(slots=True)
class _Copied:
    stream: av.stream.Stream
    shift: int | None  # None: the start keyframe was not found
    frames: int
    end: int  # where its last picture ends, clip time (ticks)
    reached_end: bool  # a unit at or after to_ns was reached


def _copy(seg: SegmentRow, output: av.container.OutputContainer,
          ostream: av.stream.Stream | None, started_at: KeyframeRow | None, shift: int | None,
          to_ns: int, first: bool) -> _Copied:
    """Copy one segment's packets into the clip, clip time = file time + `shift`. With
    `shift` None (the clip's first segment) what comes before the keyframe `started_at`
    (given then, None otherwise) is skipped and that keyframe is the clip's time 0."""
    try:
        source = av.open(str(seg.path))
    except (OSError, av.FFmpegError) as e:
        raise ExportError(f"cannot read {seg.path}: {getattr(e, 'strerror', None) or e}"
                          ) from None
    frames = end = 0
    reached_end = False
    with source:
        if not source.streams.video:
            raise ExportError(f"{seg.path}: no video stream")
        istream = source.streams.video[0]
        tb = istream.time_base or TIME_BASE
        if ostream is None:
            made: av.stream.Stream = output.add_stream_from_template(istream)
            ostream = made
            if seg.codec == "h265":
                ostream.codec_tag = "hvc1"
            ostream.time_base = TIME_BASE
        for packet in source.demux(istream):
            if packet.dts is None or packet.size == 0:
                continue  # the demuxer's end-of-stream marker
            dts = _to_ticks(packet.dts, tb)
            pts = dts if packet.pts is None else _to_ticks(packet.pts, tb)
            if shift is None:
                if not (packet.is_keyframe and started_at is not None
                        and pts >= started_at.pts):
                    continue
                shift = -dts
            if seg.start_ns + _ns(dts) >= to_ns and not (first and frames == 0):
                reached_end = True
                break
            duration = _to_ticks(packet.duration, tb) if packet.duration else 0
            packet.stream = ostream  # type: ignore[assignment]  # typed as VideoStream
            packet.time_base = TIME_BASE
            packet.dts = dts + shift
            packet.pts = pts + shift
            packet.duration = duration
            output.mux(packet)
            frames += 1
            end = dts + shift + max(duration, 1)
    return _Copied(ostream, shift, frames, end, reached_end)


def _to_ticks(value: int, tb: Fraction) -> int:
    return int(value * tb / TIME_BASE)
