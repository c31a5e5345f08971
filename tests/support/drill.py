"""One drill recorded for real, shared by the replay and export tests (recording is the
slow part): a broker, a simulated camera (real-time encode, its encode time burnt into
each picture) and drone, and the camera, drone and recorder services, all in one event
loop; a named session with marks, an alert, a WAN link outage and a drone command in it.

A live dashboard (Textual's Pilot) watches the drill as the commander would and notes
what it showed at moments of the session (:class:`Shown`), for the replay's dashboard
to be held to.

:func:`shared_drill` records it once for the whole run. Tests never change the
recordings; one that damages them works on a copy
(:func:`tests.support.replay.copy_recordings`).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import msgpack
import pytest
from mcap.reader import make_reader

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
from edge.recorder.catalog import Catalog
from edge.recorder.layout import CATALOG_FILE
from edge.services.camera import CameraService
from edge.services.drone import DroneService
from edge.services.recorder import RecorderService
from tests import support
from tests.support import Inbox, eventually
from tests.support.recorder import catalog_marks, closed_segments, recorder_answers
from tests.support.ui import until
from ui.app import DashboardApp
from ui.state import DashboardState

HOME = (30.5935, 114.3060)
MARKS = ("Team enters the gate", "Casualty found <north> & marked")
ALERT_TEXT = "Smoke reported at the east stair"
DASHBOARD_SIZE = (100, 30)
# Functional bounds only: a loaded 2-core machine is slow, not wrong.
LIVE_S = 30.0
FILES_S = 30.0


@dataclass(frozen=True)
class Shown:
    """What a dashboard showed at `at_ns`: each camera's state, each drone's position
    (rounded to about a metre), and the log of what it heard on the bus (alerts, marks,
    commands, with their times), oldest first."""

    at_ns: int
    cameras: dict[str, str]
    drones: dict[str, tuple[float, float] | None]
    events: list[tuple[float, str, str, str]]


def shown(state: DashboardState, at_ns: int) -> Shown:
    def place(p: tuple[float, float] | None) -> tuple[float, float] | None:
        return None if p is None else (round(p[0], 5), round(p[1], 5))

    return Shown(
        at_ns,
        {c.camera_id: c.status.state for c in state.cameras.values() if c.status is not None},
        {d.drone_id: place(d.position()) for d in state.drones.values() if not d.placeholder},
        [(e.ts, e.kind, e.source, e.text) for e in reversed(state.events)
         if e.kind in ("alert", "mark", "command")])


@dataclass(frozen=True)
class Drill:
    config: Path
    root: Path  # the recordings directory
    session_id: int
    start_ns: int
    end_ns: int
    marks_ns: tuple[int, ...]
    alerts_ns: tuple[int, ...]
    command_ns: int
    live: list[Shown] = field(default_factory=list)

    @property
    def catalog(self) -> Path:
        return self.root / CATALOG_FILE

    @property
    def marks(self) -> int:
        return len(self.marks_ns)

    @property
    def alerts(self) -> int:
        return len(self.alerts_ns)


def endpoints_in(runtime_dir: Path) -> Endpoints:
    return Endpoints(pub=f"ipc://{runtime_dir}/bus-pub.sock",
                     sub=f"ipc://{runtime_dir}/bus-sub.sock",
                     router=f"ipc://{runtime_dir}/bus-router.sock",
                     runtime_dir=runtime_dir, request_timeout_s=5.0)


async def _record(tmp: Path) -> Drill:
    runtime = Path(tempfile.mkdtemp(prefix="edge-x-"))  # short: ipc paths fit 107 bytes
    endpoints = endpoints_in(runtime)
    root = tmp / "recordings"
    cam = SimCamera("gate", main=(640, 360), sub=None, loop_seconds=2.0, live=True)
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
    app = DashboardApp(config, endpoints=endpoints)
    async with support.hosted(CameraService, "camera@gate", config, config_path, endpoints), \
            support.hosted(RecorderService, "recorder", config, config_path, endpoints), \
            support.hosted(DroneService, "drone@alpha", config, config_path, endpoints), \
            app.run_test(size=DASHBOARD_SIZE) as pilot:
        await box.expect(CameraStatus, lambda m: m.state == "live", within=LIVE_S)
        await box.expect(DroneStatus, lambda m: m.state == "live", within=LIVE_S)
        await recorder_answers(bus, within=15)
        # Video from before the session too: a session starts mid-segment, as in real life.
        await eventually(lambda: closed_segments(catalog, "gate"), within=FILES_S,
                         what="a first segment")
        state = app.state
        await until(pilot, lambda: any(d.position() for d in state.drones.values()),
                    "the live dashboard showing the drone", LIVE_S)

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
        live: list[Shown] = []

        async def note(what: str, done: Callable[[], bool]) -> None:
            """Once the live dashboard shows `done`, note what it shows."""
            await until(pilot, done, what, LIVE_S)
            await pilot.pause(0.3)  # whatever else is on its way lands
            live.append(shown(state, time.time_ns()))

        # The sleeps space the drill's events in time (what the exports cut by); nothing
        # waits on them.
        await asyncio.sleep(2.5)
        marks = [time.time_ns()]
        bus.publish(topics.EVENT_MARK, EventMark(note=MARKS[0], author="commander"))
        bus.publish(topics.alert("drill-test"), Alert(severity="warning", source="cam/gate",
                                                      text=ALERT_TEXT))
        bus.publish(topics.link_status("wan"), LinkStatus(link_id="wan", state="down"))
        await note("the first mark on the live dashboard",
                   lambda: any(e.text == MARKS[0] for e in state.events))
        await asyncio.sleep(0.7)
        command_ns = time.time_ns()
        env = await bus.request(topics.drone_service("alpha"),
                                DroneCommand(sysid=1, action="hold"), timeout=5)
        assert isinstance(env.message, Reply) and env.message.status == "accepted", env.message
        bus.publish(topics.link_status("wan"), LinkStatus(link_id="wan", state="up"))
        await note("the command's outcome on the live dashboard",
                   lambda: any(e.kind == "command" for e in state.events))
        await asyncio.sleep(1.7)
        marks.append(time.time_ns())
        bus.publish(topics.EVENT_MARK, EventMark(note=MARKS[1], author="commander"))
        await eventually(lambda: len(catalog_marks(catalog)) >= n + 2, within=10,
                         what="both marks in the catalog")
        await note("the second mark on the live dashboard",
                   lambda: any(e.text == MARKS[1] for e in state.events))
        await asyncio.sleep(2.0)
        reply = (await bus.request(topics.RECORDER_SERVICE,
                                   RecordCommand(action="stop"))).message
        assert isinstance(reply, Reply) and reply.status == "accepted", reply
        end_ns = int(reply.data["end_ns"])

        def indexed_past_end() -> bool:
            with Catalog(catalog) as cat:
                bus_end = max((b.last_ns or 0 for b in cat.bus_logs()), default=0)
                video_end = max((s.end_ns for s in cat.segments("gate", "main")), default=0)
            return bus_end > end_ns and video_end > end_ns

        # A little video and bus after the session, as a drill has.
        await eventually(indexed_past_end, within=FILES_S,
                         what="bus logs and video past the session's end indexed")
    return Drill(config_path, root, session_id, start_ns, end_ns, tuple(marks),
                 _alerts_in(root, start_ns, end_ns),
                 command_ns, live)


def _alerts_in(root: Path, start_ns: int, end_ns: int) -> tuple[int, ...]:
    """The log time of every alert in the session (the services raise some of their own)."""
    alert = topics.ALERT.encode()
    return tuple(t for t, frames in logged(root)
                 if frames and frames[0].startswith(alert) and start_ns <= t <= end_ns)


def logged(root: Path) -> list[tuple[int, list[bytes]]]:
    """(log time, frames) of every message of every bus log under `root`, by mcap's reader,
    in log-time order (stable for equal times: files in name order, each as written)."""
    found: list[tuple[int, list[bytes]]] = []
    for path in sorted((root / "bus").glob("*.mcap")):
        with open(path, "rb") as f:
            for _, _, message in make_reader(f).iter_messages(log_time_order=False):
                found.append((message.log_time, list(msgpack.unpackb(message.data))))
    found.sort(key=lambda x: x[0])
    return found


_recorded: Drill | None = None


def shared_drill(factory: pytest.TempPathFactory) -> Drill:
    """The drill, recorded by the first test module that asks for it (about 20 s) and
    shared by every other: a module fixture returns this. Every file is closed."""
    global _recorded
    if _recorded is None:
        _recorded = asyncio.run(_record(factory.mktemp("drill")))
    return _recorded
