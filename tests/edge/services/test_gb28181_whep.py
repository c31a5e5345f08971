"""A GB/T 28181 dome, end to end: registered, live, played by Chromium over WHEP, steered.

G's simulated device registers (digest over real SIP on UDP) with the real `edge run
gb28181`; `camera@dome`, configured with only ``main = { gb28181 = "<device>/<channel>" }``,
has it invited and puts its PS-over-RTP video on the media plane; the real uplink
serves it over WHEP to Debian's Chromium on the vehicle's own viewer page. Then the
dome is turned as the dashboard turns it, with `PtzCommand` requests to `camera@dome`
(move right, then stop), which steers it through the gb28181 service: the picture
decoded from the media plane shows the simulator's ruler block move the way the camera
turned, the picture Chromium shows does too, Chromium keeps decoding frames on the same
session, and `cam/dome/control` told who steered and that it stopped. All services run
under the real runner in this event loop, with a real broker.

Counts and positions only, never a timing: the `within` bounds keep a broken test from
hanging and are generous because the simulator encodes each PTZ view with libx264 on a
machine that may be running other tests and a browser.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from drivers.sim.camera.viewport import marker_x
from drivers.sim.gb28181.media import HEIGHT, WIDTH
from edge.bus import topics
from edge.bus.client import BusClient
from edge.bus.endpoints import Endpoints
from edge.bus.messages import (
    CameraStatus,
    CameraStream,
    GbDeviceStatus,
    PtzCommand,
    PtzStatus,
    Reply,
)
from edge.config import VehicleConfig
from edge.services.uplink import UplinkService
from tests import support
from tests.support import Inbox, eventually
from tests.support.chromium import Viewer, require_chromium, viewer_page
from tests.support.gb28181_service import (
    CHANNELS,
    DEVICE_ID,
    PASSWORD,
    PLATFORM_ID,
    camera_service,
    gb_service,
    sim_device,
)
from tests.support.links import until
from tests.support.media_pictures import media_pictures
from tests.support.uplink import TOKEN, write_config

# Starting Chromium, the simulator's first loop and each PTZ view's loop take seconds of
# CPU each on a loaded machine: a bound for a hang, not a figure.
pytestmark = pytest.mark.timeout(240)

WITHIN = 60.0  # every wait below: generous, a loaded machine is slow, not wrong
CAMERA = "dome"
# A second of the simulator's video (25 fps): "frames keep being decoded".
SECOND = 25
# The simulator turns one step (an eighth of the frame width) a PTZ move: the ruler block
# moving by half a step is a move, and cannot be the encoder's blur.
MOVED = WIDTH / 16


def config(tmp_path: Path) -> tuple[VehicleConfig, Path]:
    """The vehicle's config: `[gb28181]` on loopback with the device, one gb28181 camera,
    the uplink with its token file."""
    (tmp_path / "gb.secret").write_text(PASSWORD + "\n")
    gb = {"enabled": True, "platform_id": PLATFORM_ID, "listen": "127.0.0.1:0",
          "password": {"file": "gb.secret"}, "media_bind": "127.0.0.1",
          "keepalive_interval_s": 1.0, "request_timeout_s": 3.0, "no_media_s": 3.0,
          "devices": [{"id": DEVICE_ID, "name": "North dome"}]}
    camera = {"id": CAMERA, "name": "Dome", "main": {"gb28181": f"{DEVICE_ID}/{CHANNELS[0]}"}}
    return write_config(tmp_path, [camera], gb28181=gb)


async def steer(bus: BusClient, action: str, pan: float = 0.0) -> None:
    """The dome steered by the commander, through its camera service; it must accept."""
    env = await bus.request(topics.camera_service(CAMERA), PtzCommand(
        action=action, pan=pan, controller="commander", who="test"), timeout=WITHIN)
    assert isinstance(env.message, Reply), env.message
    assert env.message.status == "accepted", env.message


async def on_screen(viewer: Viewer) -> float | None:
    """Where the ruler block is in the picture Chromium shows now (None: no picture yet)."""
    picture = await viewer.picture()
    return None if picture is None else marker_x(picture)


async def test_gb_camera_plays_in_chromium_over_whep_and_ptz_moves_the_picture(
        bus: BusClient, endpoints: Endpoints, tmp_path: Path) -> None:
    require_chromium()
    cfg, path = config(tmp_path)
    box = Inbox(bus.subscribe(topics.cam(CAMERA), topics.GB))
    async with gb_service(endpoints, cfg, tmp_path) as gb, sim_device(gb) as (device, _):
        await box.expect(GbDeviceStatus, lambda m: m.state == "online", within=WITHIN)
        async with camera_service(endpoints, cfg, tmp_path, CAMERA), \
                support.hosted(UplinkService, "uplink", cfg, path, endpoints) as up:
            uplink = up.service
            await box.expect(CameraStatus, lambda m: m.state == "live", within=WITHIN)
            stream = await box.expect(CameraStream, within=WITHIN)
            assert (stream.codec, stream.width, stream.height) == ("h264", WIDTH, HEIGHT)

            async with viewer_page(uplink.url, TOKEN, tmp_path / "chromium") as viewer, \
                    media_pictures(bus.sync_ctx, stream.endpoint) as media:
                await viewer.play(CAMERA, within=WITHIN)
                # Chromium decodes the camera: its frames keep coming, at the camera's size.
                await viewer.wait_frames(await viewer.frames() + SECOND, within=WITHIN)
                stats = await viewer.stats()
                assert stats["codec"].startswith("video/H264"), stats
                assert (stats["width"], stats["height"]) == (WIDTH, HEIGHT), stats
                [session] = uplink.manager.sessions.values()
                assert session.camera_id == CAMERA

                # Home: the ruler block in the middle, in the media plane and on screen.
                home = await eventually(media.marker_x, within=WITHIN,
                                        what="a picture of the ruler on the media plane")
                assert home is not None and abs(home - WIDTH / 2) < MOVED, home
                shown = await until(lambda: on_screen(viewer), WITHIN,
                                    "Chromium's picture to show the ruler")
                assert abs(shown - WIDTH / 2) < MOVED, shown

                # Turn right: the world, and the block in it, moves left.
                await steer(bus, "move", pan=1.0)
                control = await box.expect(PtzStatus, lambda m: m.moving, within=WITHIN)
                assert (control.kind, control.holder, control.holder_who) == (
                    "gb28181", "commander", "test"), control
                await eventually(
                    lambda: (x := media.marker_x()) is not None and x < home - MOVED,
                    within=WITHIN, what="the media plane's picture to pan right")
                mark = box.mark()
                await steer(bus, "stop")
                # Stopped: by us, or already by the dead-man's stop if the picture took
                # longer than its second to turn; either way the device heard a stop.
                await box.expect(PtzStatus, lambda m: not m.moving and m.last_action == "stop",
                                 within=WITHIN, since=mark)
                assert device.counters.ptz_commands >= 2

                # Chromium shows the turned picture, and keeps playing the same session.
                async def turned() -> float | None:
                    x = await on_screen(viewer)
                    return x if x is not None and x < home - MOVED else None

                await until(turned, WITHIN, "Chromium's picture to pan right")
                await viewer.wait_frames(await viewer.frames() + SECOND, within=WITHIN)
                assert list(uplink.manager.sessions.values()) == [session]
                assert not viewer.errors, viewer.errors
