"""The recorder service end to end: simulated camera -RTSP-> camera@ID -media plane->
recorder -> files on disk, read back by ffprobe, PyAV and mcap's reader; and a recorder
killed with SIGKILL mid-segment, whose torn file the next start repairs and indexes.

Everything is real: the broker, the simulated camera (an RTSP server), the camera service
and the recorder under the real runner (or as `edge run recorder`, as systemd runs it).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import zmq

from drivers.sim.camera import SimCamera
from edge.bus import envelope, topics
from edge.bus.client import BusClient
from edge.bus.endpoints import Endpoints
from edge.bus.messages import Alert, CameraStatus, EventMark, RecordCommand, RecorderStatus, Reply
from edge.recorder import bus_log
from edge.recorder.catalog import Catalog
from edge.recorder.layout import CATALOG_FILE
from edge.recorder.mp4_repair import read_index
from edge.services.camera import CameraService
from edge.services.recorder import RecorderService
from tests import support
from tests.support import REPO, Inbox, eventually, kill9, require
from tests.support.media import decode_all, ffprobe, has_ffprobe
from tests.support.recorder import (
    bus_messages,
    catalog_sessions,
    closed_segments,
    recorder_answers,
    recorder_config,
    tear_tail,
)
from tests.support.retention import small_disk

SOURCE = "rec-test"
# Functional bounds only (a loaded 2-core machine is slow, not wrong): a camera is live
# within seconds, and a 2 s segment closes at the first keyframe after 2 s of video.
LIVE_S = 20.0
SEGMENT_S = 30.0


@pytest.fixture
async def camera() -> AsyncIterator[SimCamera]:
    cam = SimCamera("gate", main=(640, 360), sub=None, loop_seconds=2.0)
    await cam.start()
    yield cam
    await cam.close()


def live(m: CameraStatus) -> bool:
    return m.state == "live"


def probe_video(path: Path) -> tuple[str, int, int, int]:
    """(codec, width, height, packets) as ffprobe reads the file."""
    info = ffprobe(path)
    (stream,) = info["streams"]
    return stream["codec_name"], stream["width"], stream["height"], len(info["packets"])


def logged_marks(directory: Path) -> list[list[bytes]]:
    """Frames of every message from this test's source in the bus logs, torn files too."""
    found = []
    for path in sorted(directory.glob("*.mcap")):
        for m in bus_log.read(path):
            if len(m.frames) >= 2 and SOURCE.encode() in m.frames[1]:
                found.append(m.frames)
    return found


@pytest.mark.timeout(120)
async def test_recorder_writes_segments_bus_log_and_status(
        bus: BusClient, endpoints: Endpoints, tmp_path: Path, camera: SimCamera) -> None:
    require(has_ffprobe(), "ffprobe is not installed (Debian package ffmpeg)")
    config, config_path = recorder_config(tmp_path, {"gate": camera}, segment_seconds=2.0)
    root = tmp_path / "recordings"
    catalog = root / CATALOG_FILE
    box = Inbox(bus.subscribe(topics.cam_status("gate"), topics.RECORDER_STATUS))
    # Our own publisher, so that the exact bytes sent are known.
    pub = bus.sync_ctx.socket(zmq.PUB)
    pub.setsockopt(zmq.LINGER, 0)
    pub.connect(endpoints.pub)
    sent: list[list[bytes]] = []
    try:
        async with support.hosted(CameraService, "camera@gate", config, config_path, endpoints), \
                support.hosted(RecorderService, "recorder", config, config_path, endpoints):
            await box.expect(CameraStatus, live, within=LIVE_S)

            segs = await eventually(lambda: closed_segments(catalog, "gate"), within=SEGMENT_S,
                                    what="a closed segment in the catalog")
            seg = segs[0]
            assert seg.path.is_file() and seg.path.parent == root / "video" / "gate" / "main"
            assert (seg.codec, seg.width, seg.height, seg.closed, seg.error) == (
                "h264", 640, 360, True, None)
            assert seg.frames > 0 and seg.bytes == seg.path.stat().st_size
            assert seg.end_ns > seg.start_ns
            assert probe_video(seg.path) == ("h264", 640, 360, seg.frames)
            assert decode_all(seg.path) == seg.frames
            with Catalog(catalog) as cat:
                assert cat.keyframes(seg.id), "the segment's keyframes are indexed"

            status = await box.expect(RecorderStatus, lambda m: m.recording and any(
                s.camera_id == "gate" and s.state == "recording" and s.units_written > 0
                for s in m.streams), within=10)
            assert status.bytes_on_disk > 0 and status.free_bytes > 0
            assert status.bus_messages > 0 and status.bus_file.endswith(".mcap")
            assert status.path == str(root) and status.last_error == ""

            # The recorder's subscription must have reached the broker before the messages
            # that count are sent (marks are not cached): probe until one is in a bus log.
            n = 0

            def probe_logged() -> bool:
                nonlocal n
                n += 1
                frames = envelope.encode(topics.alert("probe"), Alert(text=f"probe {n}"),
                                         SOURCE, n, (), 7)
                pub.send_multipart(frames)
                return bool(logged_marks(root / "bus"))

            await eventually(probe_logged, within=15, every=0.2,
                             what="a probe message in the bus log")
            for i in range(1, 41):
                if i % 2:
                    frames = envelope.encode(topics.EVENT_MARK, EventMark(note=f"mark {i}"),
                                             SOURCE, i // 2 + 1, (), 7)
                else:
                    frames = envelope.encode(topics.alert("rec-test"),
                                             Alert(severity="warning", text=f"alert {i}"),
                                             SOURCE, i // 2, (b"\x00blob\xff",), 7)
                pub.send_multipart(frames)
                sent.append(frames)
            await eventually(lambda: len([f for f in logged_marks(root / "bus")
                                          if f[0] != b"alert/probe"]) >= len(sent),
                             within=15, what="every message sent in the bus log")
    finally:
        pub.close(linger=0)

    # Stopped: every file is finished and in the catalog, and mcap's own reader agrees.
    logged = [frames for topic, _, frames in bus_messages(root / "bus")
              if frames[0] in (b"event/mark", b"alert/rec-test") and SOURCE.encode() in frames[1]]
    assert logged == sent, "every message, in order, byte for byte"
    types = {(topic, schema) for topic, schema, frames in bus_messages(root / "bus")
             if SOURCE.encode() in frames[1]}
    assert ("event/mark", "event.mark") in types and ("alert/rec-test", "alert") in types
    with Catalog(catalog) as cat:
        logs = cat.bus_logs()
        assert {r.path for r in logs} == set((root / "bus").glob("*.mcap"))
        assert all(bus_log.is_whole(r.path) for r in logs)
        assert sum(r.messages for r in logs) == len(bus_messages(root / "bus"))
        rows = cat.segments("gate", "main")
        assert {r.path for r in rows} == set((root / "video").glob("*/*/*.mp4"))
        assert len(rows) >= 2  # the one closed while running and the one closed at stop
        coverage = cat.coverage("gate", "main")
        assert len(coverage.intervals) == 1 and coverage.gaps == (), \
            f"a camera that ran throughout is recorded without a gap: {coverage}"
    for row in rows:
        assert decode_all(row.path) == row.frames


async def _spawn_recorder(config_path: Path, runtime_dir: Path, log: Path
                          ) -> asyncio.subprocess.Process:
    """`edge run recorder` as systemd runs it; its log appended to `log` (a file: nobody
    reads a pipe while the test runs)."""
    env = {**os.environ, "EDGE_RUNTIME_DIR": str(runtime_dir)}
    env.pop("NOTIFY_SOCKET", None)
    err = await asyncio.to_thread(open, log, "ab")
    try:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "edge", "run", "recorder", "--config", str(config_path),
            cwd=REPO, env=env, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL, stderr=err)
    finally:
        err.close()


@pytest.mark.timeout(180)
async def test_kill9_mid_segment_then_restart_repairs_and_indexes(
        bus: BusClient, endpoints: Endpoints, runtime_dir: Path, tmp_path: Path,
        camera: SimCamera) -> None:
    require(has_ffprobe(), "ffprobe is not installed (Debian package ffmpeg)")
    config, config_path = recorder_config(tmp_path, {"gate": camera}, segment_seconds=4.0)
    root = tmp_path / "recordings"
    catalog = root / CATALOG_FILE
    log = tmp_path / "recorder.log"
    box = Inbox(bus.subscribe(topics.cam_status("gate")))
    async with support.hosted(CameraService, "camera@gate", config, config_path, endpoints):
        await box.expect(CameraStatus, live, within=LIVE_S)
        first = await _spawn_recorder(config_path, runtime_dir, log)
        try:
            earlier = await eventually(lambda: closed_segments(catalog, "gate"),
                                       within=SEGMENT_S + 20, what="a closed segment")

            def open_segment_with_fragments() -> Path | None:
                known = {r.path for r in closed_segments(catalog, "gate")}
                for path in sorted((root / "video" / "gate" / "main").glob("*.mp4")):
                    if path not in known and len(read_index(path).fragments) >= 2:
                        return path
                return None

            torn = await eventually(open_segment_with_fragments, within=SEGMENT_S,
                                    what="an open segment with two complete fragments")
        finally:
            if first.returncode is None:
                await kill9(first.pid)
            await first.wait()
        assert first.returncode == -signal.SIGKILL
        assert torn is not None
        assert torn not in {r.path for r in closed_segments(catalog, "gate")}
        whole_before = len(read_index(torn).fragments)
        # SIGKILL lands between whole writes almost always (each fragment is written at
        # once); a power cut mid-write leaves part of one, which SIGKILL cannot produce.
        size_torn = tear_tail(torn)

        second = await _spawn_recorder(config_path, runtime_dir, log)
        try:
            rows = await eventually(
                lambda: [r for r in closed_segments(catalog, "gate") if r.path == torn],
                within=30, what="the torn segment indexed after the restart")
            row = rows[0]
            index = read_index(torn)
            assert index.whole, "the torn tail is cut"
            assert len(index.fragments) >= whole_before
            assert row.frames == index.samples > 0 and row.bytes == torn.stat().st_size
            assert torn.stat().st_size < size_torn
            assert row.error is not None and "repaired at start-up" in row.error
            assert probe_video(torn) == ("h264", 640, 360, row.frames)
            assert decode_all(torn) == row.frames
            # Every segment closed before the kill is still there and still plays.
            for seg in earlier:
                assert decode_all(seg.path) == seg.frames
            # And recording goes on after the restart.
            await eventually(lambda: any(r.start_ns > row.end_ns
                                         for r in closed_segments(catalog, "gate")),
                             within=SEGMENT_S, what="a new segment after the restart")
        finally:
            if second.returncode is None:
                second.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(second.wait(), 10)
                except TimeoutError:
                    second.kill()
                    await second.wait()
        text = log.read_text(errors="replace")
        assert second.returncode == 0, text[-3000:]
        assert "Traceback" not in text, text[-3000:]

    # The bus log the killed recorder left torn was recovered and indexed at the restart.
    with Catalog(catalog) as cat:
        logs = cat.bus_logs()
        assert {r.path for r in logs} == set((root / "bus").glob("*.mcap"))
        assert all(bus_log.is_whole(r.path) for r in logs)
        assert {r.path for r in cat.segments("gate", "main")} == set(
            (root / "video").glob("*/*/*.mp4"))


class QuickRetention(RecorderService):
    RETENTION_EVERY_S = 0.5  # so that a test sees a pass in seconds, not a minute


@pytest.mark.timeout(120)
async def test_retention_prunes_old_recordings_and_says_so(
        bus: BusClient, endpoints: Endpoints, tmp_path: Path, camera: SimCamera) -> None:
    # Recordings are kept 3.6 s: the first closed segments go while recording goes on.
    config, config_path = recorder_config(tmp_path, {"gate": camera}, segment_seconds=1.0,
                                          retention_hours=0.001)
    catalog = tmp_path / "recordings" / CATALOG_FILE
    alerts = Inbox(bus.subscribe(topics.alert("recorder")))
    async with support.hosted(CameraService, "camera@gate", config, config_path, endpoints), \
            support.hosted(QuickRetention, "recorder", config, config_path, endpoints):
        first = (await eventually(lambda: closed_segments(catalog, "gate"), within=SEGMENT_S,
                                  what="a closed segment"))[0]
        alert = await alerts.expect(Alert, lambda a: a.text.startswith("Recordings pruned"),
                                    within=30)
        assert "older than" in alert.text and alert.source == "recorder"
        await eventually(lambda: not first.path.exists(), what="the oldest segment removed")
        # Recording went on, and the catalog names no file that is gone.
        await eventually(lambda: any(s.start_ns > first.start_ns
                                     for s in closed_segments(catalog, "gate")),
                         within=SEGMENT_S, what="newer segments")
        assert all(s.path.exists() for s in closed_segments(catalog, "gate"))


@pytest.mark.timeout(180)
async def test_a_full_disk_is_pruned_and_recording_resumes_sparing_a_session(
        bus: BusClient, endpoints: Endpoints, tmp_path: Path, camera: SimCamera) -> None:
    # Everything on one small disk, the catalog too, and no free-space margin: the
    # recorder writes until the disk is full, then must prune and go on.
    with small_disk(tmp_path / "disk", "3m") as disk:
        root = disk / "recordings"
        config, config_path = recorder_config(tmp_path, {"gate": camera}, path=root,
                                              segment_seconds=1.0, min_free_percent=0)
        catalog = root / CATALOG_FILE
        alerts = Inbox(bus.subscribe(topics.alert("recorder")))
        async with support.hosted(CameraService, "camera@gate", config, config_path,
                                  endpoints), \
                support.hosted(QuickRetention, "recorder", config, config_path, endpoints):
            await recorder_answers(bus)
            await eventually(lambda: closed_segments(catalog, "gate"), within=SEGMENT_S,
                             what="a first segment")
            started = await bus.request(topics.RECORDER_SERVICE,
                                        RecordCommand(action="start", name="Drill"))
            assert isinstance(started.message, Reply) and started.message.status == "accepted"
            await eventually(lambda: len(closed_segments(catalog, "gate")) >= 3,
                             within=SEGMENT_S, what="segments in the session")
            stopped = await bus.request(topics.RECORDER_SERVICE, RecordCommand(action="stop"))
            assert isinstance(stopped.message, Reply) and stopped.message.status == "accepted"
            (drill,) = catalog_sessions(catalog)
            assert drill.end_ns is not None
            kept = [s.path for s in closed_segments(catalog, "gate")
                    if s.end_ns >= drill.start_ns and s.start_ns <= drill.end_ns]
            assert kept

            pruned = await alerts.expect(Alert, lambda a: a.text.startswith("Recordings pruned"),
                                         within=90)
            assert pruned.severity == "warning" and "disk full" in pruned.text.lower()
            after = time.time_ns()
            await eventually(lambda: any(s.start_ns > after
                                         for s in closed_segments(catalog, "gate")),
                             within=SEGMENT_S, what="a segment recorded after the pruning")
            assert all(p.exists() for p in kept), "a named session's recording was pruned"
        # Stopped: no file is corrupt and the catalog names only files that exist.
        rows = closed_segments(catalog, "gate")
        assert rows and all(r.path.exists() for r in rows)
        for row in rows[-3:]:
            assert decode_all(row.path) == row.frames
