"""A short drill recorded for real, for the export tests: a broker, a simulated camera and
drone, and the camera, drone and recorder services, all in one event loop; a named
session with marks, an alert, a WAN link outage and a drone command in it."""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from drivers.sim.camera import SimCamera
from drivers.sim.drone import SimDrone
from edge.bus import topics
from edge.bus.client import BusClient
from edge.bus.endpoints import Endpoints
from edge.bus.messages import (
    Alert,
    CameraStatus,
    DroneCommand,
    DroneStatus,
    EventMark,
    LinkStatus,
    RecordCommand,
    Reply,
)
from edge.config import VehicleConfig, load_config
from edge.recorder.layout import CATALOG_FILE
from edge.services.camera import CameraService
from edge.services.drone import DroneService
from edge.services.recorder import RecorderService
from tests import support
from tests.support import Inbox, eventually
from tests.support.recorder import catalog_marks, closed_segments, recorder_answers

HOME = (30.5935, 114.3060)
MARKS = ("Team enters the gate", "Casualty found <north> & marked")
ALERT_TEXT = "Smoke reported at the east stair"


@dataclass(frozen=True)
class Drill:
    config: Path
    root: Path  # the recordings directory
    session_id: int
    start_ns: int
    end_ns: int
    marks_ns: tuple[int, ...]
    command_ns: int


async def _record(tmp: Path) -> Drill:
    runtime = Path(tempfile.mkdtemp(prefix="edge-x-"))  # short: ipc paths fit 107 bytes
    endpoints = Endpoints(pub=f"ipc://{runtime}/bus-pub.sock",
                          sub=f"ipc://{runtime}/bus-sub.sock",
                          router=f"ipc://{runtime}/bus-router.sock",
                          runtime_dir=runtime, request_timeout_s=5.0)
    root = tmp / "recordings"
    cam = SimCamera("gate", main=(640, 360), sub=None, loop_seconds=2.0)
    await cam.start()
    try:
        async with SimDrone("tcp:127.0.0.1:0", home=HOME, seed=1) as sim:
            assert sim.address is not None
            config_path = tmp / "vehicle.toml"
            config_path.write_text("\n".join([
                'vehicle = "drill"',
                "[[cameras]]", 'id = "gate"', 'name = "Gate"',
                f"main = {json.dumps(cam.url('main'))}",
                "[[drones]]", 'id = "alpha"',
                f'connection = "tcp:127.0.0.1:{sim.address[1]}"',
                "[recorder]", "enabled = true", f"path = {json.dumps(str(root))}",
                "segment_seconds = 2.0"]) + "\n")
            config = load_config(config_path)
            with support.running_broker(endpoints):
                bus = BusClient(endpoints, source="drill-test")
                try:
                    return await _drill(bus, endpoints, config_path, config, root)
                finally:
                    await bus.close()
    finally:
        await cam.close()
        shutil.rmtree(runtime, ignore_errors=True)


async def _drill(bus: BusClient, endpoints: Endpoints, config_path: Path,
                 config: VehicleConfig, root: Path) -> Drill:
    catalog = root / CATALOG_FILE
    box = Inbox(bus.subscribe(topics.cam_status("gate"), topics.drone_status("alpha-1")))
    async with support.hosted(CameraService, "camera@gate", config, config_path, endpoints), \
            support.hosted(RecorderService, "recorder", config, config_path, endpoints), \
            support.hosted(DroneService, "drone@alpha", config, config_path, endpoints):
        # Functional bounds only: a loaded 2-core machine is slow, not wrong.
        await box.expect(CameraStatus, lambda m: m.state == "live", within=20)
        await box.expect(DroneStatus, lambda m: m.state == "live", within=20)
        await recorder_answers(bus, within=15)
        await eventually(lambda: closed_segments(catalog, "gate"), within=30,
                         what="a first segment")

        # The recorder's subscription to marks must reach the broker before the marks
        # that count (marks are not cached): probe until one is in the catalog.
        n = 0

        def probe() -> bool:
            nonlocal n
            n += 1
            bus.publish(topics.EVENT_MARK, EventMark(note=f"probe {n}"))
            return bool(catalog_marks(catalog))

        await eventually(probe, within=15, every=0.3, what="a probe mark in the catalog")
        reply = (await bus.request(topics.RECORDER_SERVICE,
                                   RecordCommand(action="start", name="Drill"))).message
        assert isinstance(reply, Reply) and reply.status == "accepted", reply
        session_id = int(reply.data["session_id"])
        start_ns = int(reply.data["start_ns"])

        # The sleeps space the drill's events in time (what the exports cut by); nothing
        # waits on them.
        await asyncio.sleep(2.5)
        marks = [time.time_ns()]
        bus.publish(topics.EVENT_MARK, EventMark(note=MARKS[0], author="commander"))
        bus.publish(topics.alert("drill-test"), Alert(severity="warning", source="cam/gate",
                                                      text=ALERT_TEXT))
        bus.publish(topics.link_status("wan"), LinkStatus(link_id="wan", state="down"))
        await asyncio.sleep(1.0)
        command_ns = time.time_ns()
        env = await bus.request(topics.drone_service("alpha"),
                                DroneCommand(sysid=1, action="hold"), timeout=5)
        assert isinstance(env.message, Reply) and env.message.status == "accepted", env.message
        bus.publish(topics.link_status("wan"), LinkStatus(link_id="wan", state="up"))
        await asyncio.sleep(2.0)
        marks.append(time.time_ns())
        bus.publish(topics.EVENT_MARK, EventMark(note=MARKS[1], author="commander"))
        await eventually(lambda: len(catalog_marks(catalog)) >= n + 2, within=10,
                         what="both marks in the catalog")
        await asyncio.sleep(2.5)
        reply = (await bus.request(topics.RECORDER_SERVICE,
                                   RecordCommand(action="stop"))).message
        assert isinstance(reply, Reply) and reply.status == "accepted", reply
        end_ns = int(reply.data["end_ns"])
        await asyncio.sleep(1.0)  # a little video after the session, as a drill has
    return Drill(config_path, root, session_id, start_ns, end_ns, tuple(marks), command_ns)


def record_drill(tmp: Path) -> Drill:
    """Record the drill (about 20 s) and stop everything: every file is closed."""
    return asyncio.run(_record(tmp))
