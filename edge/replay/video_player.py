"""One camera stream's recorded segments, published on the replay's media plane.

A thread per stream demuxes the stream's fragmented MP4 segments with PyAV
(never decoding), turns each packet back into an Annex-B access unit (the
``*_mp4toannexb`` bitstream filter: keyframes led by their parameter sets, as
a camera sends them) and publishes it with a
:class:`~edge.media.publisher.MediaPublisher` when its time comes due on the
replay clock. A unit's time is its segment's start plus its decode time in the
file (segments start at 0 and join end to start).

On the replay plane a unit's ``pts``/``dts`` are its recorded wall-clock time
in 1/90000 s ticks (so any consumer can tell where in the recording it is),
and ``received_ns`` is when the replay sent it: consumers that judge
freshness by it (the uplink) see a live camera, as the issue asks.

**Seek.** The keyframe at or before the target, from the catalog's keyframe
index (receipt time, pts, fragment offset), is where reading starts: FFmpeg is
given the file's header (``ftyp``, ``moov``) and then its fragments from that
keyframe's ``moof`` on, read forward (:class:`_Fragments`), so opening a
segment reads two places of it instead of every ``moof`` in the file, and the
first packet is the keyframe. The units from there up to the target are sent
at once, unpaced (fast-forward), so a decoder holds the target's picture as
soon as it can; the rest follow at the clock. The publisher's cached GOP is
dropped at each seek, so a late joiner never starts before the new position.
Every stream does this at every seek, so its cost is what a seek costs: 3-4 ms
a stream here (most of it FFmpeg's probe decoding the keyframe), against 15-25 ms
when FFmpeg opened the whole file (probing ~5 MB of it, reading every ``moof``)
and sought in it.

**Speed.** Above 2x only keyframes are sent; when the speed comes back down,
sending resumes at the next keyframe (a :class:`~edge.media.gop.KeyframeGate`),
so the stream stays decodable.

A segment file that is missing or cannot be read is a gap (reported once);
the next segment starts at a keyframe, as every segment does.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import av.bitstream

from edge.media.gop import KeyframeGate
from edge.media.publisher import MediaPublisher
from edge.recorder.catalog import KeyframeRow, SegmentRow
from edge.replay.clock import ReplayClock
from edge.replay.gaps import Gap, GapLog

log = logging.getLogger(__name__)

TIME_BASE = Fraction(1, 90_000)
# Above this speed only keyframes are sent (as the issue says; the screen says so too).
KEYFRAMES_ONLY_ABOVE = 2.0
_FILTERS = {"h264": "h264_mp4toannexb", "h265": "hevc_mp4toannexb"}
# Opening a segment, FFmpeg's stream probe reads packets (up to 5 MB, ~20 s of a 2 Mbit/s
# camera) to estimate the frame rate: 10-20 ms a file, paid by every stream at every seek.
# Nothing here needs it (the moov gives the codec, parameter sets and time base; packets
# are never decoded), so the probe stops as soon as the codec is known: the same packets.
_OPEN_OPTIONS = {"fpsprobesize": "0"}


def ns_to_ticks(ns: int) -> int:
    return ns * 9 // 100_000


def ticks_to_ns(ticks: int) -> int:
    return ticks * 100_000 // 9


@dataclass(frozen=True, slots=True)
class Segment:
    row: SegmentRow
    keyframes: tuple[KeyframeRow, ...]

    @property
    def path(self) -> Path:
        return self.row.path


class _Fragments:
    """A segment file as FFmpeg reads it from a keyframe: its header (up to the first
    fragment, `header_end`), then its fragments from the one at `offset`, forward only.

    Not seekable, so FFmpeg's MP4 demuxer reads fragments as they come (their ``tfdt``
    gives each its decode time) instead of walking every ``moof`` of the file when it
    opens it (a read per fragment: from the disk when the file is not cached, which an
    hour of 16 cameras is not), and no seek is needed."""

    def __init__(self, path: Path, header_end: int, offset: int) -> None:
        self._file = open(path, "rb", buffering=0)
        size = os.fstat(self._file.fileno()).st_size
        if not 0 < header_end <= offset < size:
            self._file.close()
            raise ValueError(f"it has {size} bytes, and its catalog entry puts a keyframe at "
                             f"byte {offset}")
        self._header_left = header_end
        self._offset = offset

    def read(self, size: int) -> bytes:
        if self._header_left <= 0:
            return self._file.read(size)
        data = self._file.read(min(size, self._header_left))
        self._header_left -= len(data)
        if self._header_left <= 0 or not data:
            self._header_left = 0
            self._file.seek(self._offset)
        return data

    def close(self) -> None:
        self._file.close()


class VideoPlayer:
    """One stream at the clock, in a thread; see the module docstring."""

    def __init__(self, camera: str, stream: str, segments: list[Segment], clock: ReplayClock,
                 publisher: MediaPublisher, gaps: GapLog) -> None:
        self.camera = camera
        self.stream = stream
        self.segments = sorted(segments, key=lambda s: s.row.start_ns)
        self.clock = clock
        self.publisher = publisher
        self.gaps = gaps
        self.sent = 0
        self.keyframes_sent = 0
        self.seeks = 0

    @property
    def name(self) -> str:
        return f"{self.camera}/{self.stream}"

    def run(self) -> None:
        clock = self.clock
        first = True
        while not clock.stopped:
            generation = clock.generation
            position = clock.position_ns
            if not first:
                self.publisher.reset()
                self.seeks += 1
            first = False
            if self._play(position, generation):
                while not clock.stopped and not clock.wait_change(generation):
                    pass

    def _play(self, target: int, generation: int) -> bool:
        """Publish from the keyframe before `target`; True at the end, False on a seek."""
        gate = KeyframeGate()
        for seg in self.segments:
            if seg.row.end_ns <= target:
                continue
            if seg.row.start_ns > self.clock.end_ns:
                break
            if not seg.path.exists():
                self.gaps.add(Gap(self.name, seg.path, "is missing: not replayed",
                                  seg.row.start_ns, seg.row.end_ns))
                gate.lose()
                continue
            try:
                done = self._play_segment(seg, target, generation, gate)
            except (av.FFmpegError, OSError, ValueError) as e:
                self.gaps.add(Gap(self.name, seg.path, f"is damaged ({type(e).__name__}: "
                                                       f"{e}): replayed up to the damage",
                                  seg.row.start_ns, seg.row.end_ns))
                gate.lose()
                continue
            if done is not None:
                return done
        return True

    def _play_segment(self, seg: Segment, target: int, generation: int,
                      gate: KeyframeGate) -> bool | None:
        """None when the segment is done; True at the replay's end; False on a seek."""
        start = seg.row.start_ns
        # The keyframe at or before the target, when the target is inside this segment.
        key = None
        if target > start:
            before = [k for k in seg.keyframes if k.wall_ns <= target]
            key = before[-1] if before else None
        # From the keyframe's fragment (the first one's when the segment plays whole); a
        # segment without a keyframe index (none is written so) is read as FFmpeg finds it.
        fragments = (_Fragments(seg.path, seg.keyframes[0].offset,
                                (key or seg.keyframes[0]).offset) if seg.keyframes else None)
        try:
            return self._demux(seg, key, target, generation, gate, fragments)
        finally:
            if fragments is not None:
                fragments.close()

    def _demux(self, seg: Segment, key: KeyframeRow | None, target: int, generation: int,
               gate: KeyframeGate, fragments: _Fragments | None) -> bool | None:
        clock = self.clock
        start = seg.row.start_ns
        base = ns_to_ticks(start)
        source = fragments if fragments is not None else str(seg.path)
        with av.open(source, "r", options=_OPEN_OPTIONS) as container:
            stream = container.streams.video[0]
            tb = stream.time_base or TIME_BASE
            bsf = av.bitstream.BitStreamFilterContext(_FILTERS[seg.row.codec], stream)
            for packet in container.demux(stream):
                if packet.dts is None:
                    continue  # the demuxer's flush packet
                for unit in bsf.filter(packet):
                    if unit.dts is None:
                        continue
                    dts = unit.dts * tb.numerator * 90_000 // tb.denominator
                    pts = (dts if unit.pts is None
                           else unit.pts * tb.numerator * 90_000 // tb.denominator)
                    if key is not None and pts < key.pts:
                        continue  # an index at odds with the file: never before our keyframe
                    at = start + ticks_to_ns(dts)
                    if at > clock.end_ns:
                        return True
                    keyframe = bool(unit.is_keyframe)
                    state = clock.state()
                    if state.generation != generation:
                        return False
                    if state.speed > KEYFRAMES_ONLY_ABOVE and not keyframe:
                        gate.lose()
                        continue
                    if not gate.passes(keyframe):
                        continue
                    # Before the target: fast-forward, unpaced, so a decoder reaches it.
                    if at >= target and not clock.wait_until(at, generation):
                        return False
                    self.publisher.publish(bytes(unit), keyframe=keyframe, pts=base + pts,
                                           dts=base + dts, time_base=TIME_BASE,
                                           codec=seg.row.codec)
                    self.sent += 1
                    self.keyframes_sent += keyframe
        return None
