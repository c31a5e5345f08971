"""A GB/T 28181 stream is invited only while someone consumes it (`[gb28181] linger_s`).

The real gb28181 service, G's simulated device over real SIP and RTP, the real camera
service, and for a consumer a `MediaSubscriber` on the camera's media plane (then the
real uplink with an aiortc WHEP viewer): nobody subscribes, and after `linger_s` (short
here) the device's session ends and the camera says standby, without a camera-down
alert; a consumer comes, the channel is invited again and a keyframe of the new session
reaches it; with `linger_s = 0` nothing is let go.

Counts and states only, never a timing: every `within` keeps a broken test from hanging
and is generous because the simulator encodes its picture loop at start.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from drivers.gb28181.source import GbSource
from edge.bench.whep_viewer import WhepViewer
from edge.bus import topics
from edge.bus.client import BusClient
from edge.bus.endpoints import Endpoints
from edge.bus.messages import Alert, CameraStatus, CameraStream, GbDeviceStatus
from edge.media.subscriber import MediaSubscriber
from edge.services.camera import CameraService
from edge.services.uplink import UplinkService
from tests import support
from tests.support import Inbox, eventually
from tests.support.gb28181_service import (
    CHANNELS,
    DEVICE_ID,
    PASSWORD,
    PLATFORM_ID,
    camera_service,
    gb_service,
    sim_device,
    vehicle_config,
)
from tests.support.uplink import TOKEN, write_config

# The simulator encodes its picture loop with PyAV at start: seconds on a loaded machine.
pytestmark = pytest.mark.timeout(180)

WITHIN = 60.0
CAMERA_ID = "dome"
CAMERA = {"id": CAMERA_ID, "name": "Dome", "main": {"gb28181": f"{DEVICE_ID}/{CHANNELS[0]}"}}
LINGER_S = 1.0
STANDBY_REASON = "nobody has watched for 1 s; invited again when someone does"


def releases(camera: CameraService) -> int:
    source = camera.streams["main"].source
    assert isinstance(source, GbSource)
    return source.releases


def camera_down_alerts(box: Inbox) -> list[Alert]:
    return [a for a in box.all(Alert) if a.severity == "warning"]


async def test_unwatched_stream_is_released_and_a_consumer_brings_it_back(
        bus: BusClient, endpoints: Endpoints, tmp_path: Path) -> None:
    cfg = vehicle_config(tmp_path, cameras=[CAMERA], linger_s=LINGER_S)
    box = Inbox(bus.subscribe(topics.cam(CAMERA_ID), topics.GB,
                              topics.alert(topics.cam(CAMERA_ID).rstrip("/"))))
    async with gb_service(endpoints, cfg, tmp_path) as gb, sim_device(gb) as (device, _):
        await box.expect(GbDeviceStatus, lambda m: m.state == "online", within=WITHIN)
        async with camera_service(endpoints, cfg, tmp_path, CAMERA_ID) as camera:
            # Invited at start all the same: the stream is announced, the camera is live.
            await box.expect(CameraStatus, lambda m: m.state == "live", within=WITHIN)
            stream = await box.expect(CameraStream, within=WITHIN)

            # Nobody subscribes: after linger_s the device's session ends, the camera waits.
            standby = await box.expect(CameraStatus, lambda m: m.state == "standby",
                                       within=WITHIN)
            assert standby.reason == STANDBY_REASON
            await eventually(lambda: not device.sessions, within=WITHIN,
                             what="the device's session to end")
            assert gb.platform is not None and not gb.platform.sessions
            assert device.counters.invites == 1 and releases(camera) == 1
            # Standby is fine: neither down nor a camera-down alert, and the service runs.
            assert camera.health() == ("running", f"standby: {STANDBY_REASON}")
            assert not any(m.state == "down" for m in box.all(CameraStatus))
            assert camera_down_alerts(box) == []

            # A consumer comes: invited again at once, and the first unit it gets is a
            # keyframe of the new session, not the cached picture from before the release.
            mark = box.mark()
            subscribed_ns = time.time_ns()
            media = MediaSubscriber(bus.sync_ctx, stream.endpoint)
            try:
                async with asyncio.timeout(WITHIN):
                    first = await media.recv()
                    more = [await media.recv() for _ in range(5)]
                assert first.keyframe and first.codec == "h264"
                assert first.received_ns >= subscribed_ns
                assert [f.seq for f in more] == list(range(first.seq + 1, first.seq + 6))
                assert device.counters.invites == 2 and len(device.sessions) == 1
                await box.expect(CameraStatus, lambda m: m.state == "live", within=WITHIN,
                                 since=mark)
                # Watched: kept, however long that is (the subscriber is still here).
                assert releases(camera) == 1
            finally:
                media.close()

            # The consumer left: let go again after linger_s.
            mark = box.mark()
            again = await box.expect(CameraStatus, lambda m: m.state == "standby",
                                     within=WITHIN, since=mark)
            assert again.reason == STANDBY_REASON
            await eventually(lambda: not device.sessions, within=WITHIN,
                             what="the device's second session to end")
            assert releases(camera) == 2 and device.counters.invites == 2
            assert camera_down_alerts(box) == []


async def test_linger_zero_never_releases(
        bus: BusClient, endpoints: Endpoints, tmp_path: Path) -> None:
    cfg = vehicle_config(tmp_path, cameras=[CAMERA], linger_s=0)
    box = Inbox(bus.subscribe(topics.cam(CAMERA_ID), topics.GB))
    async with gb_service(endpoints, cfg, tmp_path) as gb, sim_device(gb) as (device, _):
        await box.expect(GbDeviceStatus, lambda m: m.state == "online", within=WITHIN)
        async with camera_service(endpoints, cfg, tmp_path, CAMERA_ID) as camera:
            await box.expect(CameraStatus, lambda m: m.state == "live", within=WITHIN)
            mark = box.mark()
            # Unwatched throughout, it keeps streaming: six seconds of the simulator's
            # video (25 fps), six times the linger the test above lets go after, all live
            # and on the first session.
            await box.expect(CameraStatus, lambda m: m.frames >= 6 * 25, within=WITHIN)
            assert all(m.state == "live" for _, m, _ in box.seen[mark:]
                       if isinstance(m, CameraStatus))
            assert releases(camera) == 0
            assert device.counters.invites == 1 and len(device.sessions) == 1


async def test_uplink_takes_a_viewer_for_a_camera_in_standby(
        bus: BusClient, endpoints: Endpoints, tmp_path: Path) -> None:
    """A WHEP request for a camera in standby is answered (not 409) and its subscription
    brings the camera back: the viewer decodes frames. When it leaves, the camera is let
    go again."""
    (tmp_path / "gb.secret").write_text(PASSWORD + "\n")
    gb = {"enabled": True, "platform_id": PLATFORM_ID, "listen": "127.0.0.1:0",
          "password": {"file": "gb.secret"}, "media_bind": "127.0.0.1",
          "keepalive_interval_s": 1.0, "request_timeout_s": 3.0, "no_media_s": 3.0,
          "devices": [{"id": DEVICE_ID}], "linger_s": LINGER_S}
    cfg, path = write_config(tmp_path, [CAMERA], gb28181=gb)
    box = Inbox(bus.subscribe(topics.cam(CAMERA_ID), topics.GB))
    async with gb_service(endpoints, cfg, tmp_path) as gb_svc, \
            sim_device(gb_svc) as (device, _):
        await box.expect(GbDeviceStatus, lambda m: m.state == "online", within=WITHIN)
        async with camera_service(endpoints, cfg, tmp_path, CAMERA_ID), \
                support.hosted(UplinkService, "uplink", cfg, path, endpoints) as up:
            uplink = up.service
            await box.expect(CameraStatus, lambda m: m.state == "standby", within=WITHIN)

            def standby_at_the_uplink() -> bool:
                cam = uplink.state.camera(CAMERA_ID)
                return cam is not None and cam.state == "standby" and "main" in cam.streams

            await eventually(standby_at_the_uplink, within=WITHIN,
                             what="the uplink to see the camera in standby, announced")
            await eventually(lambda: not device.sessions, within=WITHIN,
                             what="the device's session to end")

            viewer = WhepViewer(f"{uplink.url}/whep/{CAMERA_ID}", TOKEN)
            try:
                await viewer.start(timeout=WITHIN)
                await viewer.wait_frames(10, timeout=WITHIN)
                assert device.counters.invites == 2
            finally:
                await viewer.close()
            mark = box.mark()
            await box.expect(CameraStatus, lambda m: m.state == "standby", within=WITHIN,
                             since=mark)
            await eventually(lambda: not device.sessions, within=WITHIN,
                             what="the device's session to end after the viewer left")
