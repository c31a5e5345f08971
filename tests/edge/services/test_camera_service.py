"""The camera service end to end: simulated camera -RTSP-> camera@ID -bus/media plane-> test.

The simulated cameras are real RTSP servers on 127.0.0.1; the service is hosted
in-process by the real runner (`host()`), except in one test that starts it as
`edge run camera@gate` in its own process, as systemd does.  All cameras share
one name and size, so their encoded loop is made once (and cached on disk).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import cv2
import numpy as np
import pytest

from drivers.rtsp import parse_sps
from drivers.rtsp.annexb import split_annexb
from drivers.rtsp.demux import with_credentials
from drivers.sim.camera import SimCamera
from edge.bus import topics
from edge.bus.client import BusClient
from edge.bus.endpoints import Endpoints
from edge.bus.messages import (
    Alert,
    CameraStatus,
    CameraStream,
    CameraThumbnail,
    DroneVideo,
    Message,
    ServiceHealth,
)
from edge.config import SOURCE_SPECS, VehicleConfig, parse_config
from edge.media.subscriber import MediaSubscriber
from edge.runtime.service import ServiceContext
from edge.services import camera as camera_service
from edge.services.camera import CameraService
from edge.services.camera_sources import source_kinds
from tests import support
from tests.support import REPO, Inbox, eventually

pytestmark = pytest.mark.timeout(60)

M = TypeVar("M", bound=Message)
SimFactory = Callable[..., Awaitable[SimCamera]]
SPS = b"\x00\x00\x00\x01\x67"


@pytest.fixture
async def sim() -> AsyncIterator[SimFactory]:
    """Factory: `await sim(**SimCamera kwargs)` -> a started camera, closed after the test."""
    cameras: list[SimCamera] = []

    async def make(**options: Any) -> SimCamera:
        options.setdefault("sub", None)
        camera = SimCamera("cam", **options)
        cameras.append(camera)
        await camera.start()
        return camera

    yield make
    for camera in cameras:
        await camera.close()


def config_for(**camera: Any) -> VehicleConfig:
    camera.setdefault("id", "gate")
    camera.setdefault("name", "Gate")
    return parse_config({"cameras": [camera]})


@asynccontextmanager
async def hosted(endpoints: Endpoints, config: VehicleConfig, config_dir: Path,
                 camera_id: str = "gate") -> AsyncIterator[ServiceContext]:
    """`camera@ID` run by the real service runner in this event loop."""
    async with support.hosted(CameraService, f"camera@{camera_id}", config,
                              config_dir / "vehicle.toml", endpoints, ready_within=5) as h:
        yield h.ctx


def live(m: CameraStatus) -> bool:
    return m.state == "live"


def width_of(keyframe: bytes) -> int:
    """Picture width from the SPS that leads a keyframe."""
    sps = next(n for n in split_annexb(keyframe) if n[0] & 0x1F == 7)
    return parse_sps("h264", sps).width


# --------------------------------------------------------------------------- live

async def test_camera_comes_live_with_stream_thumbnail_and_media(
        bus: BusClient, endpoints: Endpoints, tmp_path: Path, sim: SimFactory) -> None:
    camera = await sim(sub=(640, 360))
    cfg = config_for(main=camera.url("main"), sub=camera.url("sub"),
                     position={"lat": 30.59, "lon": 114.30})
    box = Inbox(bus.subscribe(topics.cam("gate"), topics.svc_health("camera@gate")))
    async with hosted(endpoints, cfg, tmp_path):
        st = await box.expect(CameraStatus, lambda m: live(m) and m.fps > 0)
        assert (st.camera_id, st.name, st.reason) == ("gate", "Gate", "")
        assert (st.codec, st.profile, st.width, st.height) == (
            "h264", "Constrained Baseline", 1280, 720)
        # Figures a loaded machine can only lower; the upper bounds are functional: fps is
        # counted over presentation time (the camera sends 30), kbps is kilobits (about
        # 2,000: not bytes, not bits) and the frame age is in seconds (not milliseconds).
        assert 0 < st.fps < 40 and 0 < st.kbps < 6000, st
        assert (st.lat, st.lon) == (30.59, 114.30)
        assert st.last_frame_age_s is not None and 0 <= st.last_frame_age_s < 10
        assert st.reconnects == 0 and st.dropped == 0

        stream = await box.expect(CameraStream, topic=topics.cam_stream("gate", "main"))
        assert stream.endpoint == endpoints.media("gate", "main")
        assert (stream.codec, stream.profile_level_id) == ("h264", "42c01f")
        assert (stream.width, stream.height, stream.fps) == (1280, 720, 30.0)
        assert stream.parameter_sets.startswith(SPS)
        sub_stream = await box.expect(CameraStream, topic=topics.cam_stream("gate", "sub"))
        assert (sub_stream.width, sub_stream.height) == (640, 360)

        # A consumer that joins now starts at once, on a keyframe, from the GOP cache.
        media = MediaSubscriber(bus.sync_ctx, stream.endpoint)
        try:
            async with asyncio.timeout(5):
                first = await media.recv()
                rest = [await media.recv() for _ in range(10)]
        finally:
            media.close()
        assert first.keyframe and first.codec == "h264" and first.data.startswith(SPS)
        assert [f.seq for f in rest] == list(range(first.seq + 1, first.seq + 11))
        assert media.stats.gaps == 0

        thumb, blobs = await box.expect_env(CameraThumbnail)
        assert (thumb.camera_id, thumb.width, thumb.height, thumb.format) == (
            "gate", 160, 90, "jpeg")
        assert thumb.captured_ns > 0 and len(blobs) == 1
        image = cv2.imdecode(np.frombuffer(blobs[0], np.uint8), cv2.IMREAD_COLOR)
        assert image is not None and image.shape == (90, 160, 3)
        assert float(image.std()) > 5  # a picture, not a flat grey frame

        health = await box.expect(ServiceHealth, lambda m: m.state == "running")
        assert health.detail.startswith("live")

    # State topics are cached: a dashboard that starts late sees the camera at once.
    late = Inbox(bus.subscribe(topics.cam("gate")))
    await late.expect(CameraThumbnail, within=2)
    await late.expect(CameraStream, within=2)


async def test_camera_over_udp(
        bus: BusClient, endpoints: Endpoints, tmp_path: Path, sim: SimFactory) -> None:
    camera = await sim()
    box = Inbox(bus.subscribe(topics.cam("gate")))
    async with hosted(endpoints, config_for(main=camera.url(), transport="udp"), tmp_path):
        st = await box.expect(CameraStatus, lambda m: live(m) and m.fps > 0)
        assert (st.codec, st.width, st.height) == ("h264", 1280, 720)
        await eventually(lambda: [s.transport for s in camera.sessions()] == ["udp"],
                         what="one UDP session at the camera")


async def test_a_live_stream_is_announced_again_unchanged(
        bus: BusClient, endpoints: Endpoints, tmp_path: Path, sim: SimFactory,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Every minute in service; a second here. A replay from deep in a long recording
    # reads only its last minutes of bus log for the streams' announcements.
    monkeypatch.setattr(camera_service, "ANNOUNCE_EVERY_S", 1.0)
    camera = await sim(sub=None)
    box = Inbox(bus.subscribe(topics.cam_stream("gate", "main")))
    async with hosted(endpoints, config_for(main=camera.url()), tmp_path):
        first = await box.expect(CameraStream, within=20)
        for _ in range(2):
            again = await box.expect(CameraStream, since=box.mark(), within=10)
            assert again == first, "announced again, and unchanged"


# --------------------------------------------------------------------------- failures

async def test_camera_killed_and_restarted(
        bus: BusClient, endpoints: Endpoints, tmp_path: Path, sim: SimFactory) -> None:
    camera = await sim()
    box = Inbox(bus.subscribe(topics.cam("gate"), topics.alert("cam/gate")))
    async with hosted(endpoints, config_for(main=camera.url()), tmp_path):
        await box.expect(CameraStatus, live)
        mark = box.mark()
        await camera.stop()
        down = await box.expect(CameraStatus, lambda m: m.state == "down", since=mark)
        assert down.reason in {"closed by source", "connection reset by source",
                               "connection refused"}, down.reason
        alert = await box.expect(Alert, since=mark)
        assert alert.severity == "warning" and alert.source == "cam/gate"
        assert alert.text == f"Gate is down: {down.reason}"

        await camera.start()
        mark = box.mark()
        # It keeps trying (backoff capped at 2 s), so it is back after a few attempts; 30 s
        # only guards a service that gave up.
        back = await box.expect(CameraStatus, live, within=30, since=mark)
        assert back.reconnects == 1
        again = await box.expect(Alert, since=mark)
        assert (again.severity, again.text) == ("notice", "Gate is live again")
        # Exactly one alert each way, not one per failed reconnect attempt.
        assert [a.severity for a in box.all(Alert)] == ["warning", "notice"]


async def test_garbage_source_gives_a_reason_and_the_service_keeps_running(
        bus: BusClient, endpoints: Endpoints, tmp_path: Path, sim: SimFactory) -> None:
    camera = await sim(garbage=True)
    box = Inbox(bus.subscribe(topics.cam("gate"), topics.svc_health("camera@gate")))
    async with hosted(endpoints, config_for(main=camera.url()), tmp_path):
        st = await box.expect(CameraStatus, lambda m: m.state == "down")
        assert st.reason == "invalid data from source", st.reason
        mark = box.mark()
        # Once started (its first report may still say "starting"), the service is degraded.
        health = await box.expect(ServiceHealth, lambda m: m.state != "starting", since=mark)
        assert health.state == "degraded" and "invalid data from source" in health.detail
        await box.expect(CameraStatus, since=mark)  # still publishing its status


async def test_source_closing_mid_stream_is_reported_and_recovered(
        bus: BusClient, endpoints: Endpoints, tmp_path: Path, sim: SimFactory) -> None:
    camera = await sim(close_after_s=1.0)
    box = Inbox(bus.subscribe(topics.cam("gate")))
    async with hosted(endpoints, config_for(main={"rtsp": camera.url()}), tmp_path):
        await box.expect(CameraStatus, live)
        down = await box.expect(CameraStatus, lambda m: m.state == "down")
        assert down.reason in {"closed by source", "connection reset by source"}, down.reason
        back = await box.expect(CameraStatus, lambda m: live(m) and m.reconnects >= 1)
        assert back.frames > 0


# --------------------------------------------------------------------------- configuration

async def test_credentials_by_reference(
        bus: BusClient, endpoints: Endpoints, tmp_path: Path, sim: SimFactory) -> None:
    camera = await sim(user="viewer", password="s3cr:et@1")
    (tmp_path / "gate.secret").write_text("viewer:s3cr:et@1\n")
    (tmp_path / "wrong.secret").write_text("viewer:nope\n")
    cfg = parse_config({"cameras": [
        {"id": "gate", "name": "Gate", "main": camera.url(),
         "credentials": {"file": "gate.secret"}},
        {"id": "yard", "name": "Yard", "main": camera.url(),
         "credentials": {"file": "wrong.secret"}},
    ]})
    box = Inbox(bus.subscribe(topics.CAM, topics.ALERT))
    async with hosted(endpoints, cfg, tmp_path, "gate"), hosted(endpoints, cfg, tmp_path, "yard"):
        await box.expect(CameraStatus, lambda m: m.camera_id == "gate" and live(m))
        refused = await box.expect(CameraStatus, lambda m: m.camera_id == "yard"
                                   and m.state == "down")
        assert refused.reason == "401 unauthorized"
    # The secret reaches the camera only: never a status, alert or stream message.
    for _, message, _ in box.seen:
        assert "s3cr" not in repr(message) and "nope" not in repr(message)


def test_every_kind_of_source_the_config_takes_can_be_built() -> None:
    assert source_kinds() == {spec.kind for spec in SOURCE_SPECS}


def test_credentials_are_percent_encoded_into_the_url() -> None:
    url = with_credentials("rtsp://old:x@10.0.0.5:554/h264", "admin:p@ss/w:rd")
    assert url == "rtsp://admin:p%40ss%2Fw%3Ard@10.0.0.5:554/h264"
    assert with_credentials("rtsp://10.0.0.5/x", None) == "rtsp://10.0.0.5/x"


async def test_drone_camera_follows_the_drone_announcement(
        bus: BusClient, endpoints: Endpoints, tmp_path: Path, sim: SimFactory) -> None:
    camera = await sim()
    box = Inbox(bus.subscribe(topics.cam("alpha-cam")))
    cfg = config_for(id="alpha-cam", name="Alpha gimbal", drone="alpha-1")
    async with hosted(endpoints, cfg, tmp_path, "alpha-cam"):
        waiting = await box.expect(CameraStatus)
        assert waiting.state == "connecting" and "drone" in waiting.reason
        bus.publish(topics.drone_video("alpha-1"), DroneVideo(
            drone_id="alpha-1", sysid=1, compid=100, stream_id=1, uri=camera.url()))
        st = await box.expect(CameraStatus, live)
        assert (st.width, st.height) == (1280, 720)
        stream = await box.expect(CameraStream)
        assert stream.endpoint == endpoints.media("alpha-cam", "main")

        # The drone switches cameras: the service follows, and a consumer of the
        # media plane stays connected and simply continues at a keyframe.
        media = MediaSubscriber(bus.sync_ctx, stream.endpoint)
        try:
            async with asyncio.timeout(5):
                await media.recv()
            other = await sim(main=(640, 360))
            mark = box.mark()
            bus.publish(topics.drone_video("alpha-1"), DroneVideo(
                drone_id="alpha-1", sysid=1, compid=100, stream_id=1, uri=other.url()))
            await box.expect(CameraStatus, lambda m: live(m) and m.width == 640, since=mark)
            async with asyncio.timeout(5):
                while not (frame := await media.recv()).keyframe or width_of(frame.data) != 640:
                    pass
        finally:
            media.close()
        assert media.stats.restarts == 0 and media.stats.gaps == 0  # same publisher throughout
        assert camera.sessions() == []  # the first camera was let go


# --------------------------------------------------------------------------- as systemd runs it

async def test_edge_run_camera_in_its_own_process(
        bus: BusClient, runtime_dir: Path, tmp_path: Path, sim: SimFactory) -> None:
    camera = await sim()
    config = tmp_path / "vehicle.toml"
    config.write_text(f'[[cameras]]\nid = "gate"\nname = "Gate"\nmain = "{camera.url()}"\n')
    box = Inbox(bus.subscribe(topics.cam("gate"), topics.svc_health("camera@gate")))
    env = {**os.environ, "EDGE_RUNTIME_DIR": str(runtime_dir)}
    env.pop("NOTIFY_SOCKET", None)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "edge", "run", "camera@gate", "--config", str(config),
        cwd=REPO, env=env, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        st = await box.expect(CameraStatus, live, within=20)
        assert (st.codec, st.width, st.height) == ("h264", 1280, 720)
        await box.expect(ServiceHealth, lambda m: m.state == "running")
        proc.send_signal(signal.SIGTERM)
        out, err = await asyncio.wait_for(proc.communicate(), 8)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, err.decode()
    assert b"Traceback" not in err, err.decode()
