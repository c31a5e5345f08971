"""The MP4 segment writer, fed real H.264/H.265 from the simulated camera's encoder and read
back by FFmpeg (PyAV) and by ffprobe; killed with SIGKILL; run out of disk on a tmpfs."""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import av
import pytest

from drivers.rtsp.annexb import Codec
from edge.media.wire import MediaFrame
from edge.recorder.mp4_repair import read_index, repair
from edge.recorder.mp4_segment import (
    RecordingWriteError,
    SegmentInfo,
    SegmentWriter,
)
from tests.support import REPO, require
from tests.support.media import (
    HEIGHT,
    START_NS,
    WIDTH,
    decode_all,
    encoded_units,
    ffprobe,
    has_ffprobe,
)
from tests.support.retention import small_disk

pytestmark = pytest.mark.timeout(120)

FRAME = 3000  # ticks of 1/90000 s at 30 fps
FFMPEG_NAME = {"h264": "h264", "h265": "hevc"}
TAG = {"h264": "avc1", "h265": "hvc1"}


def record(tmp: Path, units: list[MediaFrame], **kwargs: Any
           ) -> tuple[SegmentWriter, list[SegmentInfo]]:
    segments: list[SegmentInfo] = []
    writer = SegmentWriter(tmp, "north-gate", "main", on_segment=segments.append, **kwargs)
    for unit in units:
        writer.write(unit)
    writer.close()
    return writer, segments


def packets(probe: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in probe["packets"] if "pts" in p]


@pytest.mark.parametrize("codec", ["h264", "h265"])
def test_segments_are_read_back_by_ffmpeg_and_ffprobe(tmp_path: Path, codec: Codec) -> None:
    require(has_ffprobe(), "ffprobe is not installed (Debian package ffmpeg)")
    units = encoded_units(codec, 7.0)
    # Start mid-GOP, as a recorder joining a running camera without the GOP replay would:
    # the 25 units before the keyframe at 1 s cannot be decoded and must not be written.
    writer, segments = record(tmp_path, units[5:], segment_seconds=2.0)

    assert writer.counters.dropped_before_keyframe == 25
    assert writer.counters.units_written == len(units) - 30
    assert sum(s.frames for s in segments) == writer.counters.units_written
    assert [s.path.name for s in segments] == [
        "20261201T184801.000Z.mp4", "20261201T184803.000Z.mp4", "20261201T184805.000Z.mp4"]
    assert all(s.path.parent == tmp_path / "north-gate" / "main" for s in segments)

    for seg in segments:
        assert seg.closed and seg.error is None
        assert (seg.codec, seg.width, seg.height) == (codec, WIDTH, HEIGHT)
        assert seg.size == seg.path.stat().st_size
        probe = ffprobe(seg.path)
        stream = probe["streams"][0]
        assert stream["codec_name"] == FFMPEG_NAME[codec]
        assert stream["codec_tag_string"] == TAG[codec]
        assert (stream["width"], stream["height"]) == (WIDTH, HEIGHT)
        pkts = packets(probe)
        assert len(pkts) == seg.frames
        assert "K" in pkts[0]["flags"] and pkts[0]["pts"] == 0
        # The last frame lasts until the next segment's first (ffprobe 5.1 reports the last
        # packet's duration as the one before it, but the stream's duration exactly).
        assert stream["time_base"] == "1/90000" and stream["duration_ts"] == seg.duration
        # Every keyframe the report names is where ffprobe sees one, at the fragment
        # (moof) the report says, and that fragment starts with it.
        keyed = [p["pts"] for p in pkts if "K" in p["flags"]]
        assert [k.pts for k in seg.keyframes] == keyed
        fragments = {f.offset: f for f in read_index(seg.path).fragments}
        for k in seg.keyframes:
            assert fragments[k.offset].keyframe and fragments[k.offset].decode_time == k.pts
        assert seg.keyframes[0].wall_ns == seg.first_wall_ns
        # FFmpeg itself decodes every frame (decoding is the test's business, not the
        # writer's), and PyAV's demuxer agrees on codec and size.
        assert decode_all(seg.path) == seg.frames
        with av.open(str(seg.path)) as container:
            ctx = container.streams.video[0].codec_context
            assert (ctx.name, ctx.width, ctx.height) == (FFMPEG_NAME[codec], WIDTH, HEIGHT)

    # One timeline across the files: each starts where the one before ended, in stream
    # time and in wall-clock time, and every frame is one camera frame after the last.
    for prev, nxt in zip(segments, segments[1:], strict=False):
        assert nxt.stream_start == prev.stream_start + prev.duration
        assert nxt.first_wall_ns == prev.end_wall_ns
    times = [s.stream_start + p["pts"] for s in segments for p in packets(ffprobe(s.path))]
    assert times == [i * FRAME for i in range(len(times))]


def test_the_open_segment_is_described_while_it_is_written(tmp_path: Path) -> None:
    units = encoded_units("h264", 3.0)
    writer = SegmentWriter(tmp_path, "north-gate", "sub", segment_seconds=60.0)
    assert writer.current is None
    for unit in units[:45]:
        writer.write(unit)
    now = writer.current
    assert now is not None and not now.closed
    assert now.frames == 45 and now.path.exists()
    assert now.first_wall_ns == units[0].received_ns and now.last_wall_ns == units[44].received_ns
    # The first fragment (units 0-29) is on disk; the second, from the keyframe at 1 s,
    # is still being filled and will start where the file ends now.
    assert now.size == now.path.stat().st_size > 0
    assert [f.offset for f in read_index(now.path).fragments] == [now.keyframes[0].offset]
    assert [k.pts for k in now.keyframes] == [0, 90_000]
    assert now.keyframes[1].offset == now.size
    done = writer.close()
    assert done is not None and done.closed and done.frames == 45
    assert writer.current is None


def test_a_camera_restart_continues_the_timeline_by_the_wall_clock(tmp_path: Path) -> None:
    require(has_ffprobe(), "ffprobe is not installed (Debian package ffmpeg)")
    before = encoded_units("h264", 2.0, epoch=1)
    # The camera process restarts: new epoch, its pts from an arbitrary origin, its first
    # 10 units mid-GOP (dropped), its keyframe 31 frame intervals after the last unit.
    after = encoded_units("h264", 3.0, epoch=2, first_pts=123_456_789,
                          start_ns=before[-1].received_ns + 1_000_000_000 // 30)[20:]
    # No timestamps at all for the last second: the wall clock spaces the frames.
    tail = [dataclasses.replace(u, pts=None, dts=None) for u in after[30:]]
    writer, segments = record(tmp_path, before + after[:30] + tail, segment_seconds=60.0)

    assert writer.counters.dropped_before_keyframe == 10
    assert len(segments) == 1  # 1 s without units is not a gap that ends a segment
    pts = [p["pts"] for p in packets(ffprobe(segments[0].path))]
    steps = [b - a for a, b in zip(pts, pts[1:], strict=False)]
    jump = after[10].received_ns - before[-1].received_ns
    assert steps == [FRAME] * 59 + [round(jump * 90_000 / 1e9)] + [FRAME] * 59
    assert decode_all(segments[0].path) == len(pts) == 120


def test_a_gap_ends_the_segment_and_recording_resumes_at_a_keyframe(tmp_path: Path) -> None:
    first = encoded_units("h264", 2.5)
    # The camera is gone for 5 s and comes back mid-GOP (same epoch and sequence: the
    # publisher never noticed): nothing is written until its next keyframe.
    later = encoded_units("h264", 3.0, first_seq=first[-1].seq + 1,
                          first_pts=first[-1].pts + 5 * 90_000,  # type: ignore[operator]
                          start_ns=first[-1].received_ns + 5_000_000_000)[15:]
    writer, segments = record(tmp_path, first + later, segment_seconds=60.0)

    assert [s.frames for s in segments] == [75, 60]
    assert writer.counters.dropped_before_keyframe == 15
    a, b = segments
    assert a.end_wall_ns == a.last_wall_ns + 1_000_000_000 // 30
    assert b.first_wall_ns == later[15].received_ns
    assert b.first_wall_ns - a.end_wall_ns > 4_000_000_000  # the gap lies between them
    assert b.stream_start > a.stream_start + a.duration
    assert [decode_all(s.path) for s in segments] == [75, 60]


def test_a_new_codec_starts_a_new_segment(tmp_path: Path) -> None:
    require(has_ffprobe(), "ffprobe is not installed (Debian package ffmpeg)")
    h264 = encoded_units("h264", 2.0)
    h265 = encoded_units("h265", 2.0, first_seq=61, first_pts=60 * FRAME,
                         start_ns=START_NS + 2_000_000_000)
    _, segments = record(tmp_path, h264 + h265, segment_seconds=60.0)
    assert [(s.codec, s.frames) for s in segments] == [("h264", 60), ("h265", 60)]
    assert [ffprobe(s.path)["streams"][0]["codec_tag_string"] for s in segments] == \
        ["avc1", "hvc1"]
    assert segments[1].stream_start == segments[0].stream_start + segments[0].duration


def test_labels_that_cannot_name_a_directory_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="camera '../x' cannot name a directory"):
        SegmentWriter(tmp_path, "../x", "main")
    with pytest.raises(ValueError, match="stream ''"):
        SegmentWriter(tmp_path, "cam", "")


# -- kill -9 -------------------------------------------------------------------------

CHILD = textwrap.dedent("""
    import sys, time
    from edge.recorder.mp4_segment import SegmentWriter
    from tests.support.media import encoded_units

    units = encoded_units("h264", 8.0, gop=60)
    writer = SegmentWriter(sys.argv[1], "north-gate", "main", segment_seconds=2.0)
    stop_after = int(sys.argv[2])
    for unit in units[:stop_after]:
        writer.write(unit)
        print(unit.seq, flush=True)
        time.sleep(0.01)
    print("stopped", flush=True)
    time.sleep(120)
""")


def test_kill_9_mid_segment_loses_at_most_the_open_fragment(tmp_path: Path) -> None:
    # GOPs of 2 s, so only frag_duration keeps fragments to 1 s: with frag_keyframe alone
    # the 55 units since the last keyframe would all be lost, not 25.
    encoded_units("h264", 8.0, gop=60)  # the loop encoded once, in this process
    fed_target = 175  # 5.83 s: the third segment (units 120-179) is open, mid-fragment
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path), str(fed_target)],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    lines: list[str] = []
    try:
        assert proc.stdout is not None and proc.stderr is not None
        for line in proc.stdout:  # the test's timeout ends a child that hangs
            lines.append(line.strip())
            if lines[-1] == "stopped":
                break
        assert lines and lines[-1] == "stopped", proc.stderr.read()[-2000:]
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    fed = len(lines) - 1
    assert fed == fed_target

    files = sorted((tmp_path / "north-gate" / "main").glob("*.mp4"))
    assert [f.name for f in files] == ["20261201T184800.000Z.mp4", "20261201T184802.000Z.mp4",
                                       "20261201T184804.000Z.mp4"]
    results = [repair(f) for f in files]
    assert not any(r.changed for r in results[:2])  # closed cleanly before the kill
    assert results[2].playable
    frames = [decode_all(f) for f in files]
    assert frames[:2] == [60, 60]
    lost = fed - sum(frames)
    # The open fragment holds less than 1 s (30 units), plus the unit held back for its
    # duration: 150-174 here.
    assert 0 <= lost <= 31, f"{lost} units lost"
    assert lost == 25


# -- the disk fills up ---------------------------------------------------------------


def fill(path: Path) -> None:
    """Write zeros to `path` until the filesystem has no room left."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError as e:
        assert e.errno == errno.ENOSPC
    finally:
        os.close(fd)


def test_a_full_disk_raises_our_error_and_recording_resumes_when_space_returns(
        tmp_path: Path) -> None:
    units = encoded_units("h264", 30.0)
    with small_disk(tmp_path / "disk", "2m") as disk:
        filler = disk / "filler"
        free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
        filler.write_bytes(b"\0" * (free - 300_000))  # room for about 8 s of this video
        segments: list[SegmentInfo] = []
        writer = SegmentWriter(disk, "north-gate", "main", segment_seconds=2.0,
                               on_segment=segments.append)
        errors: list[tuple[int, RecordingWriteError]] = []
        i = 0
        while not errors:
            try:
                writer.write(units[i])
            except RecordingWriteError as e:
                errors.append((i, e))
            i += 1
        failed_at, error = errors[0]
        assert error.errno == errno.ENOSPC
        assert str(error).startswith(f"cannot write {disk / 'north-gate' / 'main'}/")
        assert "No space left on device" in str(error)

        # Cutting the torn fragment freed a little: fill the disk up again. Still full,
        # the next GOP is refused as cleanly (when its keyframe is written), not obscurely.
        fill(disk / "filler2")
        while writer.counters.write_errors < 2 and i < failed_at + 90:
            with contextlib.suppress(RecordingWriteError):
                writer.write(units[i])
            i += 1
        assert writer.counters.write_errors == 2
        before_free = len(segments)

        filler.unlink()
        (disk / "filler2").unlink()
        resume = next(u for u in units[i:] if u.keyframe)
        for unit in units[i:]:
            writer.write(unit)
        writer.close()

        finished = [s for s in segments[:before_free] if s.error is None]
        assert len(finished) >= 2
        for seg in segments:
            # Finished, cut short by the error (repaired to whole fragments) or recorded
            # after the space came back: every file plays, every frame it claims.
            assert decode_all(seg.path) == seg.frames == read_index(seg.path).samples
        cut_short = [s for s in segments if s.error is not None]
        assert all("No space left on device" in (s.error or "") for s in cut_short)
        resumed = segments[before_free:]
        assert resumed and resumed[0].first_wall_ns == resume.received_ns
        assert resumed[0].error is None
        assert sum(s.frames for s in resumed) == len(units) - units.index(resume)
        on_disk = sorted(p.name for p in (disk / "north-gate" / "main").iterdir())
        assert on_disk == sorted(s.path.name for s in segments)
        assert failed_at > 60  # at least two segments were finished before the disk filled
