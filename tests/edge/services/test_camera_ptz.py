"""Steering through the camera service: `PtzCommand` to `camera@<id>`, for ONVIF and GB cameras.

Real peers throughout: the simulated ONVIF camera (SOAP on 127.0.0.1, its PTZ moving
the picture it streams over RTSP), G's simulated GB/T 28181 dome registered with the
real gb28181 service, and the camera service hosted by the real runner with a real
broker. A pan and a zoom are seen in the decoded picture (the ruler's white block moves
on a pan and widens on a zoom); who holds a camera is seen on `cam/<id>/control`.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from drivers.rtsp import RtspSource
from drivers.sim.onvif import Position
from edge.bus import topics
from edge.bus.client import BusClient
from edge.bus.endpoints import Endpoints
from edge.bus.messages import CameraStatus, CommandEvent, GbDeviceStatus, PtzStatus
from edge.config import parse_config
from edge.services.camera import CameraService
from edge.services.camera_ptz import DEAD_MAN_S
from tests import support
from tests.support import Inbox, eventually, free_port
from tests.support.gb28181_service import (
    CHANNELS,
    DEVICE_ID,
    camera_service,
    gb_service,
    sim_device,
    vehicle_config,
)
from tests.support.onvif_client import CREDENTIALS, SUB, OnvifCamera, Pictures, onvif_camera
from tests.support.ptz import held, steer

# The simulators encode their pictures at start (seconds on a loaded machine) and the
# ONVIF camera encodes live while it is away from home.
pytestmark = pytest.mark.timeout(180)

CENTRE = "centre page 10.8.0.2"


@pytest.fixture
async def cam() -> AsyncIterator[OnvifCamera]:
    async with onvif_camera() as c:
        yield c


@asynccontextmanager
async def onvif_service(cam: OnvifCamera, endpoints: Endpoints, tmp_path: Path,
                        **ptz: Any) -> AsyncIterator[CameraService]:
    """`camera@gate` on the simulated ONVIF camera, `ptz` its `[[cameras]] ptz` table."""
    (tmp_path / "gate.secret").write_text(CREDENTIALS + "\n")
    cfg = parse_config({"cameras": [{
        "id": "gate", "name": "Gate", "credentials": {"file": "gate.secret"},
        "main": {"onvif": cam.address, "profile": "main"}, "ptz": ptz}]})
    async with support.hosted(CameraService, "camera@gate", cfg, tmp_path / "vehicle.toml",
                              endpoints, ready_within=10) as h:
        yield h.service


@asynccontextmanager
async def sub_pictures(cam: OnvifCamera) -> AsyncIterator[Pictures]:
    """The camera's sub stream decoded in the test (640 wide: cheap), showing the ruler."""
    sink = Pictures()
    source = RtspSource(cam.camera.url("sub"), name="gate/sub-test", sink=sink)
    await source.start()
    try:
        await eventually(lambda: sink.marker_x() is not None, within=30,
                         what="a decoded picture showing the ruler")
        yield sink
    finally:
        await source.stop()


def holder(who: str, controller: str = "commander") -> Any:
    return lambda m: (m.holder, m.holder_who) == (controller, who)


async def test_onvif_pan_zoom_presets_and_home_move_the_picture(
        bus: BusClient, endpoints: Endpoints, tmp_path: Path, cam: OnvifCamera) -> None:
    box = Inbox(bus.subscribe(topics.cam_control("gate"), topics.EVENT_COMMAND))
    async with onvif_service(cam, endpoints, tmp_path) as service, \
            sub_pictures(cam) as pictures:
        first = await box.expect(PtzStatus)
        assert (first.camera_id, first.kind, first.reason, first.holder) == ("gate", "onvif",
                                                                           "", "")
        assert not first.moving and not first.centre_allowed
        home = pictures.marker_x()
        assert home is not None and abs(home - SUB[0] / 2) < 8

        # An arrow key held: the move is repeated until the picture has panned. Half speed
        # (an eighth of the frame a second): the ruler stays in view however late the test
        # looks.
        async with held(bus, "gate", pan=0.5, who="dashboard") as replies:
            assert replies[0].status == "accepted", replies[0]
            await box.expect(PtzStatus, lambda m: m.moving and m.holder == "commander")
            # Panning right turns the camera right: the world, and the ruler, move left.
            await eventually(lambda: (x := pictures.marker_x()) is not None
                             and x < home - SUB[0] / 8, within=30, what="the picture to pan")
        assert all(r.status == "accepted" for r in replies), replies
        mark = box.mark()
        stop = await steer(bus, "gate", "stop", who="dashboard")
        assert stop.status == "accepted", stop
        assert cam.ptz.moving() == (False, False)
        # The repeats only pushed the dead-man's deadline on: the device heard one move
        # (and one more after each dead-man stop, had the loop ever stalled that long).
        assert service.ptz is not None
        assert cam.device.requests["ContinuousMove"] == 1 + service.ptz.dead_man_stops
        await box.expect(PtzStatus, lambda m: not m.moving and m.last_action == "stop",
                         since=mark)
        event = await box.expect(CommandEvent, lambda e: e.action.startswith("ptz move"))
        assert (event.service, event.subject, event.by, event.status) == (
            "camera@gate", "gate", "test", "accepted")
        assert (event.action, event.detail) == ("ptz move pan 0.5 tilt 0",
                                                  "dashboard (commander)")

        reply = await steer(bus, "gate", "home")
        assert reply.status == "accepted", reply
        await eventually(lambda: (x := pictures.marker_x()) is not None
                         and abs(x - home) < 8, within=30, what="the picture back at home")
        assert cam.ptz.position() == Position()

        width = pictures.marker_width()
        assert width is not None
        # 0.2 of the zoom range is 1.6x: plain to see, and the ruler stays in view.
        reply = await steer(bus, "gate", "zoom", zoom=0.2)
        assert reply.status == "accepted", reply
        await eventually(lambda: (w := pictures.marker_width()) is not None
                         and w > 1.4 * width, within=30, what="the picture to zoom in")
        assert cam.ptz.position().zoom == pytest.approx(0.2)

        reply = await steer(bus, "gate", "set_preset", preset=3)
        assert reply.status == "accepted", reply
        [stored] = cam.ptz.presets.values()
        assert (stored.name, reply.detail) == ("3", f"ONVIF preset token {stored.token}")
        # Elsewhere (home, 1x), then back to preset 3 (1.6x).
        assert (await steer(bus, "gate", "home")).status == "accepted"
        await eventually(lambda: (w := pictures.marker_width()) is not None
                         and w < 1.2 * width, within=30, what="the picture to zoom out")
        reply = await steer(bus, "gate", "preset", preset=3)
        assert reply.status == "accepted", reply
        await eventually(lambda: (w := pictures.marker_width()) is not None
                         and w > 1.4 * width, within=30, what="preset 3's picture")
        assert cam.ptz.position() == stored.position

        # Storing preset 3 again overwrites it rather than adding another.
        assert (await steer(bus, "gate", "set_preset", preset=3)).status == "accepted"
        assert list(cam.ptz.presets) == [stored.token]
        missing = await steer(bus, "gate", "preset", preset=9)
        assert (missing.status, missing.detail) == ("rejected", "camera gate has no preset 9")
        # The status says why the last command failed (and an accepted one clears it).
        await box.expect(PtzStatus, lambda m: m.reason == "camera gate has no preset 9")
        mark = box.mark()
        assert (await steer(bus, "gate", "preset", preset=3)).status == "accepted"
        await box.expect(PtzStatus, lambda m: m.reason == "", since=mark)


async def test_gb_move_reaches_the_device_and_the_dead_man_stops_it(
        bus: BusClient, endpoints: Endpoints, tmp_path: Path) -> None:
    camera = {"id": "dome", "name": "Dome", "main": {"gb28181": f"{DEVICE_ID}/{CHANNELS[0]}"}}
    cfg = vehicle_config(tmp_path, cameras=[camera])
    box = Inbox(bus.subscribe(topics.cam_control("dome"), topics.EVENT_COMMAND, topics.GB))
    async with gb_service(endpoints, cfg, tmp_path) as gb, sim_device(gb) as (device, _):
        await box.expect(GbDeviceStatus, lambda m: m.state == "online", within=30)
        async with camera_service(endpoints, cfg, tmp_path) as service:
            first = await box.expect(PtzStatus)
            assert (first.kind, first.reason, first.holder) == ("gb28181", "", "")
            video = device.video[CHANNELS[0]]

            reply = await steer(bus, "dome", "move", pan=1.0, tilt=-0.25, who="dashboard")
            assert reply.status == "accepted", reply
            # The service answers once the device has: its view has moved a step.
            assert (video.view.pan, video.view.tilt) == (1, -1)
            assert device.counters.ptz_commands == 1
            moved = await box.expect(CommandEvent, lambda e: e.service == "gb28181")
            assert (moved.action, moved.by, moved.status) == ("ptz move", "camera@dome",
                                                              "accepted")
            await box.expect(PtzStatus, lambda m: m.moving and m.holder_who == "dashboard")

            # No stop is sent: the camera service sends its own, through gb28181.
            stop = await box.expect(CommandEvent, lambda e: e.service == "gb28181"
                                    and e.action == "ptz stop", within=10 + DEAD_MAN_S)
            assert (stop.by, stop.status) == ("camera@dome", "accepted")
            own = await box.expect(CommandEvent, lambda e: e.by == "camera@dome"
                                   and e.service == "camera@dome")
            assert (own.action, own.status, own.detail) == ("ptz stop", "accepted",
                                                            "no move for 1 s")
            await box.expect(PtzStatus, lambda m: not m.moving and m.last_action == "stop")
            assert device.counters.ptz_commands == 2
            assert service.ptz is not None and service.ptz.dead_man_stops == 1

            # A zoom step is a zoom pulse: in, then stop.
            mark = box.mark()
            reply = await steer(bus, "dome", "zoom", zoom=0.5)
            assert reply.status == "accepted", reply
            assert video.view.zoom == 1 and device.counters.ptz_commands == 4
            await box.expect(CommandEvent, lambda e: e.service == "gb28181"
                             and e.action == "ptz stop", since=mark)
            assert gb_actions(box, mark) == ["ptz move", "ptz stop"]

            for action, preset, gb_action in (("set_preset", 5, "ptz preset_set"),
                                              ("preset", 5, "ptz preset_call"),
                                              ("home", 0, "ptz preset_call")):
                mark = box.mark()
                reply = await steer(bus, "dome", action, preset=preset)
                assert reply.status == "accepted", (action, reply)
                await box.expect(CommandEvent, lambda e: e.service == "gb28181", since=mark)
                assert gb_actions(box, mark) == [gb_action], action
            assert reply.detail == ("home is preset 1 on a GB/T 28181 camera (the standard "
                                    "has no home command)")
            assert device.counters.ptz_commands == 7


def gb_actions(box: Inbox, since: int) -> list[str]:
    """The gb28181 service's command events the inbox has taken since `since`."""
    return [m.action for _, m, _ in box.seen[since:]
            if isinstance(m, CommandEvent) and m.service == "gb28181"]


async def test_gb_device_refusal_is_the_reply_and_the_reason(
        bus: BusClient, endpoints: Endpoints, tmp_path: Path) -> None:
    camera = {"id": "dome", "name": "Dome", "main": {"gb28181": f"{DEVICE_ID}/{CHANNELS[0]}"}}
    cfg = vehicle_config(tmp_path, cameras=[camera])
    box = Inbox(bus.subscribe(topics.cam_control("dome")))
    # The service runs, the device never registers: the service refuses at once.
    async with gb_service(endpoints, cfg, tmp_path), \
            camera_service(endpoints, cfg, tmp_path):
        reply = await steer(bus, "dome", "move", pan=-1.0)
        line = f"device {DEVICE_ID} is offline: not registered yet"
        assert (reply.status, reply.detail) == ("rejected", line)
        status = await box.expect(PtzStatus, lambda m: m.reason != "")
        assert (status.reason, status.moving) == (line, False)


async def test_an_rtsp_camera_cannot_be_steered(
        bus: BusClient, endpoints: Endpoints, tmp_path: Path) -> None:
    # Nothing listens there: the camera is down, and that does not matter to steering.
    cfg = parse_config({"cameras": [{"id": "yard", "name": "Yard",
                                     "main": f"rtsp://127.0.0.1:{free_port()}/live"}]})
    box = Inbox(bus.subscribe(topics.cam_control("yard"), topics.EVENT_COMMAND))
    line = "camera yard cannot be steered: its source is rtsp (steering needs onvif or gb28181)"
    async with support.hosted(CameraService, "camera@yard", cfg, tmp_path / "vehicle.toml",
                              endpoints):
        status = await box.expect(PtzStatus)
        assert (status.kind, status.reason, status.holder) == ("", line, "")
        for action in ("move", "home", "release", "nonsense"):
            reply = await steer(bus, "yard", action, pan=1.0)
            assert (reply.status, reply.detail) == ("rejected", line), action
        event = await box.expect(CommandEvent)
        assert (event.subject, event.status, event.detail) == ("yard", "rejected",
                                                               f"test (commander): {line}")


async def test_arbitration_commander_first_centre_where_allowed(
        bus: BusClient, endpoints: Endpoints, tmp_path: Path, cam: OnvifCamera) -> None:
    box = Inbox(bus.subscribe(topics.cam_control("gate")))
    async with onvif_service(cam, endpoints, tmp_path, centre=True, hold_s=30) as service:
        first = await box.expect(PtzStatus)
        assert first.centre_allowed and first.holder == ""

        # The commander holds it: the centre is refused, saying by whom and how long.
        assert (await steer(bus, "gate", "stop", who="dashboard")).status == "accepted"
        st = await box.expect(PtzStatus, holder("dashboard"))
        assert st.held_until_ns > 0
        refused = await steer(bus, "gate", "move", pan=1.0, controller="centre", who=CENTRE)
        assert refused.status == "rejected"
        found = re.fullmatch(r"camera gate is steered by the commander \(dashboard\) for "
                             r"(\d+) more s", refused.detail)
        assert found is not None and 1 <= int(found[1]) <= 30, refused.detail
        assert cam.device.requests.get("ContinuousMove", 0) == 0

        # Released: the centre may steer at once, and holds it.
        assert (await steer(bus, "gate", "release", who="dashboard")).status == "accepted"
        await box.expect(PtzStatus, lambda m: m.holder == "" and m.last_action == "release")
        async with held(bus, "gate", pan=-0.5, controller="centre", who=CENTRE) as replies:
            assert replies[0].status == "accepted", replies[0]
            await box.expect(PtzStatus, lambda m: holder(CENTRE, "centre")(m) and m.moving)
            assert cam.ptz.moving() == (True, False)
            # Another centre viewer is refused while the first holds it.
            other = await steer(bus, "gate", "stop", controller="centre", who="centre 2")
            assert other.status == "rejected"
            assert re.fullmatch(rf"camera gate is steered by the centre \({CENTRE}\) for "
                                r"\d+ more s", other.detail), other.detail
            # The commander takes over: the centre's pan is stopped before its command is
            # carried out, not a dead-man period later.
            mark = box.mark()
            stops = cam.device.requests.get("Stop", 0)
            taken = await steer(bus, "gate", "set_preset", preset=1, who="dashboard")
            assert taken.status == "accepted", taken
            assert cam.ptz.moving() == (False, False)
            assert cam.device.requests["Stop"] == stops + 1
            await box.expect(PtzStatus, lambda m: holder("dashboard")(m) and not m.moving,
                             since=mark)
            # The centre's key is still down: its repeats are refused now.
            await eventually(lambda: replies[-1].status == "rejected", within=10,
                             what="the centre's repeats to be refused")
        assert "by the commander (dashboard)" in replies[-1].detail

        # A move without a stop (a console gone): the camera service stops it itself, long
        # before the device's own timeout (10 s) would.
        mark = box.mark()
        stops = cam.device.requests["Stop"]
        assert (await steer(bus, "gate", "move", tilt=0.5)).status == "accepted"
        await box.expect(PtzStatus, lambda m: m.moving, since=mark)
        mark = box.mark()
        await box.expect(PtzStatus, lambda m: not m.moving and m.last_action == "stop",
                         within=5, since=mark)
        assert cam.device.requests["Stop"] == stops + 1 and cam.ptz.moving() == (False, False)
        assert service.ptz is not None and service.ptz.dead_man_stops >= 1

        # Requests that make no sense are refused naming the field and its value.
        bad: list[tuple[str, dict[str, Any], str]] = [
            ("spin", {}, "action 'spin': expected one of move, stop, zoom, preset, "
                         "set_preset, home, release"),
            ("move", {"pan": 2.0}, "pan 2 is outside -1..1"),
            ("zoom", {"zoom": float("nan")}, "zoom nan is outside -1..1"),
            ("preset", {"preset": 0}, "preset 0 is outside 1..255"),
            ("stop", {"controller": "mayor"},
             "controller 'mayor': expected one of commander, centre")]
        for action, fields, line in bad:
            reply = await steer(bus, "gate", action, **fields)
            assert (reply.status, reply.detail) == ("rejected", line), (action, fields)


async def test_centre_not_allowed_and_a_hold_lapses(
        bus: BusClient, endpoints: Endpoints, tmp_path: Path, cam: OnvifCamera) -> None:
    box = Inbox(bus.subscribe(topics.cam_control("gate")))
    async with onvif_service(cam, endpoints, tmp_path, hold_s=1.0):
        first = await box.expect(PtzStatus)
        assert not first.centre_allowed
        refused = await steer(bus, "gate", "home", controller="centre", who=CENTRE)
        assert (refused.status, refused.detail) == (
            "rejected", "the centre may not steer camera gate (cameras.ptz.centre is false)")
        assert "GotoHomePosition" not in cam.device.requests

        assert (await steer(bus, "gate", "home", who="dashboard")).status == "accepted"
        await box.expect(PtzStatus, holder("dashboard"))
        # Nobody sends anything more: the hold lapses by itself, and the status says so.
        lapsed = await box.expect(PtzStatus, lambda m: m.holder == ""
                                  and m.last_action == "home", within=10)
        assert (lapsed.holder_who, lapsed.held_until_ns, lapsed.last_action) == ("", 0, "home")

        # Stopping the camera service stops a camera it set moving (its dead-man goes too).
        assert (await steer(bus, "gate", "move", pan=-1.0)).status == "accepted"
        assert cam.ptz.moving() == (True, False)
    assert cam.ptz.moving() == (False, False)


async def test_onvif_device_failure_is_one_line_and_the_video_goes_on(
        bus: BusClient, endpoints: Endpoints, tmp_path: Path, cam: OnvifCamera) -> None:
    box = Inbox(bus.subscribe(topics.cam("gate")))
    async with onvif_service(cam, endpoints, tmp_path):
        await box.expect(CameraStatus, lambda m: m.state == "live", within=30)
        assert (await steer(bus, "gate", "home")).status == "accepted"
        # The ONVIF service goes away; the camera's RTSP stream does not.
        await cam.device.close()
        reply = await steer(bus, "gate", "move", pan=1.0)
        assert reply.status == "rejected"
        assert reply.detail.startswith(f"ONVIF {cam.address}: ContinuousMove: "), reply.detail
        assert "\n" not in reply.detail and "Traceback" not in reply.detail
        status = await box.expect(PtzStatus, lambda m: m.reason != "")
        assert (status.reason, status.moving) == (reply.detail, False)
        mark = box.mark()
        live = await box.expect(CameraStatus, since=mark)
        assert live.state == "live"
