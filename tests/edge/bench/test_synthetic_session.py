"""`write_synthetic_session`: two cameras for a minute, read back as replay reads a
recording (the catalog through `load_source`, the bus logs through the replay's index)
and a segment read by ffprobe, which nobody here wrote."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.bench.synthetic_session import LEAD_S, write_synthetic_session
from edge.bus import topics
from edge.bus.envelope import decode
from edge.bus.messages import CameraStatus, CameraStream
from edge.recorder.bus_log import read
from edge.recorder.catalog import Catalog
from edge.replay.bus_player import BusIndex
from edge.replay.gaps import GapLog
from edge.replay.service import load_source
from tests.support import require
from tests.support.media import ffprobe, has_ffprobe

# Writing takes about a second; ffprobe of a 20 s segment with its packets a few more.
pytestmark = pytest.mark.timeout(60)

END = 1_800_000_000_123_456_789  # a fixed "now": the times are the function's, not ours
SECOND = 1_000_000_000
SEGMENT_S = 20


def test_two_cameras_for_a_minute_read_back_as_a_recording(tmp_path: Path) -> None:
    require(has_ffprobe(), "ffprobe is not installed (Debian package ffmpeg)")
    made = write_synthetic_session(tmp_path, 2, 1.0, segment_seconds=SEGMENT_S, end_ns=END)
    assert (made.start_ns, made.end_ns) == (END - 60 * SECOND, END)
    assert made.catalog == tmp_path / "catalog.sqlite"

    with Catalog(made.catalog) as cat:
        session = cat.session(made.session_id)
        assert session is not None and session.end_ns is not None
        assert (session.start_ns, session.end_ns) == (made.start_ns, made.end_ns)
        source = load_source(cat, session.start_ns, session.end_ns, session)
        coverage = {(c.camera, c.stream): c for c in cat.coverage_all()}

    assert sorted(source.streams) == [("cam01", "main"), ("cam02", "main")]
    recorded_from = made.start_ns - round(LEAD_S * SECOND)
    for name, segments in source.streams.items():
        rows = [s.row for s in segments]
        # 62 s recorded (the lead before the session, then the minute) in 20 s segments.
        assert len(rows) == 4, (name, rows)
        assert recorded_from <= rows[0].start_ns < recorded_from + SECOND // 30
        assert rows[-1].end_ns >= made.end_ns
        for a, b in zip(rows, rows[1:], strict=False):
            assert a.end_ns == b.start_ns, (name, a, b)  # joined as a camera that ran on
        assert coverage[name].gaps == () and len(coverage[name].intervals) == 1
        for seg in segments:
            assert seg.row.codec == "h264" and (seg.row.width, seg.row.height) == (1280, 720)
            assert seg.path.parent == tmp_path / "video" / name[0] / name[1]
            # A 1 s GOP: a keyframe every 30 frames, the first where the segment starts.
            assert len(seg.keyframes) == -(-seg.row.frames // 30), (seg.row, seg.keyframes)
            assert seg.keyframes[0].wall_ns == seg.row.start_ns
            steps = {b.wall_ns - a.wall_ns
                     for a, b in zip(seg.keyframes, seg.keyframes[1:], strict=False)}
            assert steps <= {SECOND - 1, SECOND, SECOND + 1}, steps
            # Each offset is where its fragment's moof starts, as replay reads it.
            data = seg.path.read_bytes()
            assert all(data[k.offset + 4:k.offset + 8] == b"moof" for k in seg.keyframes)

    # A segment as ffprobe reads it: the codec, every frame the catalog counts, and the
    # keyframes where the catalog's index says.
    seg = source.streams[("cam02", "main")][1]
    probed = ffprobe(seg.path)
    stream = probed["streams"][0]
    assert (stream["codec_name"], stream["width"], stream["height"]) == ("h264", 1280, 720)
    assert len(probed["packets"]) == seg.row.frames == SEGMENT_S * 30
    assert [p["pts"] for p in probed["packets"] if "K" in p["flags"]] == \
        [k.pts for k in seg.keyframes]

    # The bus: what the replay needs to know the streams, statuses at 1 Hz, marks, alerts.
    assert len(source.bus_logs) == made.bus_logs >= 3
    gaps = GapLog()
    index = BusIndex(source.bus_logs, gaps)
    assert gaps.all() == [] and index.messages == made.bus_messages
    for cid in ("cam01", "cam02"):
        assert topics.cam_stream(cid, "main").encode() in index.state
        assert topics.cam_status(cid).encode() in index.state
    assert len(source.marks) == 4 and len(index.alerts) == 3
    assert len(index.events) == 7
    # Each mark the catalog files is on the bus too, logged a moment after it was made.
    assert all(any(0 <= t - mark < SECOND // 1000 for t in index.events)
               for mark in source.marks), (source.marks, index.events)
    announced: list[CameraStream] = []
    statuses = 0
    for log in source.bus_logs:
        for m in read(log.path, topics=[topics.cam_stream("cam01", "main"),
                                        topics.cam_status("cam01")]):
            env = decode(m.frames)
            assert recorded_from <= env.header.ts_ns <= m.log_time_ns <= made.end_ns + SECOND
            if isinstance(env.message, CameraStream):
                announced.append(env.message)
            else:
                assert isinstance(env.message, CameraStatus) and env.message.state == "live"
                statuses += 1
    assert len(announced) == 1
    stream_msg = announced[0]
    assert (stream_msg.camera_id, stream_msg.codec, stream_msg.width, stream_msg.height) == \
        ("cam01", "h264", 1280, 720)
    assert len(stream_msg.profile_level_id) == 6 and stream_msg.parameter_sets
    assert 61 <= statuses <= 63  # 1 Hz over the 62 s recorded
