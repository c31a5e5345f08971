"""The dashboard driven with Textual's Pilot against a real broker and a fake vehicle."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from typing import Any

import pytest
import zmq
from textual.command import CommandList, CommandPalette

from edge.bus import topics
from edge.bus.client import BusClient
from edge.bus.envelope import Envelope
from edge.bus.messages import (
    Alert,
    CameraStatus,
    CameraThumbnail,
    DroneCommand,
    DroneStatus,
    DroneTelemetry,
    EventMark,
    LinkCommand,
    LinkStatus,
    RecordCommand,
    RecorderStatus,
    Reply,
    UplinkSessions,
    ViewerSession,
)
from tests.support import BrokerHandle
from tests.support.ui import until
from tests.ui.feed import FakeVehicle
from ui.app import DashboardApp
from ui.dialogs import ConfirmDialog, GotoDialog, MarkDialog, TextDialog
from ui.screens.camera import CameraScreen
from ui.screens.drone import DroneScreen
from ui.screens.help import HelpScreen
from ui.widgets.cameras import CameraGrid, CameraTile
from ui.widgets.drones import DroneTable
from ui.widgets.events import EventTable
from ui.widgets.links import LinkTable, link_row
from ui.widgets.status_bar import StatusBar

pytestmark = pytest.mark.timeout(30)

SIZE = (100, 30)


def tile_text(app: DashboardApp, cam_id: str) -> str:
    for tile in app.screen.query(CameraTile):
        if tile.camera_id == cam_id:
            lines = tile._text + tile._picture
            return "\n".join("".join(seg.text for seg in line) for line in lines)
    return ""


def status_text(app: DashboardApp) -> str:
    return str(app.screen.query_one(StatusBar).render())


def drone_keys(app: DashboardApp) -> list[str]:
    return list(app.screen.query_one(DroneTable)._keys)


def fly(vehicle: FakeVehicle, link: str = "alpha", sysid: int = 1) -> None:
    vehicle.drone_status(link, sysid)
    vehicle.drone_telemetry(link, sysid)


class FakeDroneService:
    """Answers `drone@alpha` the way the scripted replies say; records every command."""

    def __init__(self, bus: BusClient) -> None:
        self.commands: list[DroneCommand] = []
        self.replies: list[Reply | float] = []  # a float: stay silent that long
        bus.serve(topics.drone_service("alpha"), self.handle)

    async def handle(self, env: Envelope) -> Reply:
        assert isinstance(env.message, DroneCommand)
        self.commands.append(env.message)
        reply = self.replies.pop(0) if self.replies else Reply(status="accepted")
        if isinstance(reply, float):
            await asyncio.sleep(reply)
            return Reply(status="accepted", detail="too late")
        return reply


async def test_tiles_appear_for_cameras_and_values_update(make_app: Callable[..., DashboardApp],
                                                          vehicle: FakeVehicle) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        # Configured cameras have tiles before anything is heard of them.
        await until(pilot, lambda: "NO DATA" in tile_text(app, "north-gate"), "config tiles")
        assert "East yard" in tile_text(app, "east-yard")
        await until(pilot, lambda: app.state.bus.connected, "the bus heartbeat")
        vehicle.fps = 25.0
        vehicle.camera_status("north-gate")
        vehicle.camera_status("roof", name="Roof")  # not in config: a tile appears
        await until(pilot, lambda: "25fps" in tile_text(app, "north-gate"), "north-gate live")
        assert "LIVE" in tile_text(app, "north-gate")
        await until(pilot, lambda: "Roof" in tile_text(app, "roof"), "a tile for a new camera")
        vehicle.fps = 7.5
        vehicle.camera_status("north-gate", kbps=2400.0)
        await until(pilot, lambda: "7.5fps 2.4M" in tile_text(app, "north-gate"), "new values")
        vehicle.camera_thumbnail("north-gate")
        await until(pilot, lambda: "▀" in tile_text(app, "north-gate"), "the thumbnail drawn")
        vehicle.camera_status("east-yard", state="down", reason="connection refused")
        await until(pilot, lambda: "DOWN connection refused" in tile_text(app, "east-yard"),
                    "a down camera")
        tile = next(t for t in app.screen.query(CameraTile) if t.camera_id == "east-yard")
        assert tile.shown_state == "down"


async def test_drone_command_is_confirmed_sent_and_answered(
        make_app: Callable[..., DashboardApp], vehicle: FakeVehicle, publisher: BusClient) -> None:
    service = FakeDroneService(publisher)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        fly(vehicle)
        await until(pilot, lambda: drone_keys(app) == ["alpha-1"], "the drone's row")
        await pilot.press("2")  # the drones pane
        await pilot.press("r")
        await until(pilot, lambda: isinstance(app.screen, ConfirmDialog), "the confirmation")
        dialog = app.screen
        assert isinstance(dialog, ConfirmDialog)
        assert "alpha-1" in dialog.title_text and "alpha-1" in dialog.body
        assert "RETURN TO LAUNCH" in dialog.body
        assert not service.commands, "nothing may be sent before the confirmation"
        await pilot.press("y")
        await until(pilot, lambda: service.commands, "the command at the drone service")
        cmd = service.commands[0]
        assert (cmd.action, cmd.sysid) == ("rtl", 1)
        drones = app.screen.query_one(DroneTable)
        await until(pilot, lambda: "accepted" in str(drones.border_subtitle), "the answer shown")
        assert any("return to launch accepted" in e.text for e in app.state.events)

        # Rejected, with the service's reason shown.
        service.replies.append(Reply(status="rejected", detail="not armed"))
        await pilot.press("h")
        await until(pilot, lambda: isinstance(app.screen, ConfirmDialog), "the confirmation")
        await pilot.press("y")
        await until(pilot, lambda: "rejected: not armed" in str(drones.border_subtitle),
                    "the rejection and its reason")

        # Cancelled: nothing goes out.
        await pilot.press("l")
        await until(pilot, lambda: isinstance(app.screen, ConfirmDialog), "the confirmation")
        await pilot.press("n")
        await pilot.pause(0.3)
        assert [c.action for c in service.commands] == ["rtl", "hold"]

        # A service that does not answer in time: the commander is told so.
        service.replies.append(2.0)
        await pilot.press("l")
        await until(pilot, lambda: isinstance(app.screen, ConfirmDialog), "the confirmation")
        await pilot.press("y")
        await until(pilot, lambda: "timeout" in str(drones.border_subtitle), "the timeout",
                    timeout=5)
        assert app.state.drones["alpha-1"].last_command.status == "timeout"  # type: ignore[union-attr]


async def test_goto_asks_for_a_target_then_confirms(make_app: Callable[..., DashboardApp],
                                                    vehicle: FakeVehicle,
                                                    publisher: BusClient) -> None:
    service = FakeDroneService(publisher)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        fly(vehicle)
        await until(pilot, lambda: drone_keys(app) == ["alpha-1"], "the drone's row")
        await pilot.press("2", "g")
        await until(pilot, lambda: isinstance(app.screen, GotoDialog), "the go-to dialog")
        for field, value in (("#lat", "30.6"), ("#lon", "114.31"), ("#alt", "60")):
            app.screen.query_one(field).value = value  # type: ignore[attr-defined]
        await pilot.press("enter", "enter", "enter")
        await until(pilot, lambda: isinstance(app.screen, ConfirmDialog), "the confirmation")
        assert "30.600000, 114.310000 at 60 m" in app.screen.body  # type: ignore[attr-defined]
        await pilot.press("y")
        await until(pilot, lambda: service.commands, "the go-to command")
        cmd = service.commands[0]
        assert (cmd.action, cmd.lat, cmd.lon, cmd.alt_m) == ("goto", 30.6, 114.31, 60.0)


async def test_mark_is_published_on_the_bus(make_app: Callable[..., DashboardApp],
                                            vehicle: FakeVehicle, publisher: BusClient) -> None:
    marks = publisher.subscribe(topics.EVENT_MARK)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.state.bus.connected, "the bus heartbeat")
        await pilot.press("m")
        await until(pilot, lambda: isinstance(app.screen, MarkDialog), "the mark dialog")
        await pilot.press(*"quench: fire at gate? m", "enter")  # q, m and ? are text here
        env = await asyncio.wait_for(marks.recv(), 10)
        assert isinstance(env.message, EventMark)
        assert env.message.note == "quench: fire at gate? m"
        assert env.message.author.endswith("@dashboard")
        # Our own mark comes back from the bus into the event log.
        events = app.screen.query_one(EventTable)
        await until(pilot, lambda: any(c[3].plain == "quench: fire at gate? m"
                                       for c in events._cells.values()), "the mark in the log")


async def test_bus_loss_is_shown_and_recovered(make_app: Callable[..., DashboardApp],
                                               vehicle: FakeVehicle, publisher: BusClient,
                                               restartable_broker: BrokerHandle) -> None:
    marks = publisher.subscribe(topics.EVENT_MARK)
    app = make_app(heartbeat_timeout=1.0, reconnect_every=0.5)
    async with app.run_test(size=SIZE) as pilot:
        vehicle.camera_status("north-gate")
        await until(pilot, lambda: "LIVE" in tile_text(app, "north-gate"), "live data")
        await until(pilot, lambda: "bus ● ok" in status_text(app), "the bus shown there")
        restartable_broker.stop()
        await until(pilot, lambda: "BUS GONE" in status_text(app), "the bus shown gone")
        assert app.state.bus.connected is False
        # A mark made while the bus is gone is kept, and said to be.
        await pilot.press("m")
        await until(pilot, lambda: isinstance(app.screen, MarkDialog), "the mark dialog")
        await pilot.press(*"during loss", "enter")
        await until(pilot, lambda: "1 mark(s) unsent" in status_text(app), "the unsent mark")
        assert app.is_running
        restartable_broker.start()
        await until(pilot, lambda: "bus ● ok" in status_text(app), "the bus shown back",
                    timeout=8)
        env = await asyncio.wait_for(marks.recv(), 10)  # sent once the bus is back
        assert isinstance(env.message, EventMark) and env.message.note == "during loss"
        vehicle.fps = 3.0
        vehicle.camera_status("north-gate")
        await until(pilot, lambda: "3.0fps" in tile_text(app, "north-gate"), "fresh data again")
        texts = [e.text for e in app.state.events]
        assert any(t.startswith("bus gone") for t in texts)
        assert any(t.startswith("bus back") for t in texts)


async def test_odd_data_never_crashes_it(make_app: Callable[..., DashboardApp],
                                         vehicle: FakeVehicle, publisher: BusClient,
                                         fast_endpoints: object) -> None:
    app = make_app()
    huge = "\x1b[2J\x07" + "名" * 5000 + "\n[bold]not markup[/]" * 1000
    # As a state or severity: a word no writer here may send, which a reader must still take.
    word: Any = huge
    nan, inf = math.nan, math.inf
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.state.bus.connected, "the bus heartbeat")
        p = publisher.publish
        p(topics.cam_status("north-gate"), CameraStatus(
            camera_id=huge, name=huge, state=word, reason=huge, fps=nan, kbps=-inf, width=-5,
            height=10**12, last_frame_age_s=-30.0, lat=nan, lon=inf))
        p(topics.cam_status("odd"), CameraStatus())  # all defaults, id only in the topic
        p(topics.cam_status(""), CameraStatus())  # no id at all
        p(topics.cam_thumbnail("east-yard"), CameraThumbnail(camera_id="east-yard"),
          b"\xff\xd8 not a jpeg")
        p(topics.cam_thumbnail("east-yard"), CameraThumbnail(camera_id="east-yard"))  # no blob
        p(topics.drone_status("alpha-1"), DroneStatus(
            drone_id=huge, sysid=-1, link="", state=word, mode=huge, armed=True,
            link_quality_pct=nan, last_message_age_s=-inf, home_lat=999.0))
        p(topics.drone_telemetry("alpha-1"), DroneTelemetry(
            lat=nan, lon=inf, alt_rel_m=-1e300, groundspeed_mps=inf, battery_pct=-50.0,
            satellites=-3, gps_fix=huge, heading_deg=nan))
        p(topics.link_status("sat"), LinkStatus(state=word, rtt_ms=-1.0, loss_pct=1e9,
                                                tx_kbps=nan, rx_kbps=inf))
        p(topics.UPLINK_SESSIONS, UplinkSessions(sessions=[
            ViewerSession(viewer=huge, camera_id=huge, kbps=nan) for _ in range(500)]))
        p(topics.alert("x"), Alert(severity=word, source=huge, text=huge))
        p(topics.EVENT_MARK, EventMark(note=huge, author=huge))
        # Frames that are not envelopes at all, straight onto the broker. A new PUB socket
        # drops what it sends before its connection is up: sent again until the dashboard
        # has dropped and counted both kinds.
        raw = publisher.sync_ctx.socket(zmq.PUB)
        raw.connect(fast_endpoints.pub)  # type: ignore[attr-defined]

        def garbage_counted() -> bool:
            raw.send_multipart([b"cam/x/status", b"\x00garbage", b"\xc1"])
            raw.send_multipart([b"drone/x/status"])
            client = app.bridge.client if app.bridge is not None else None
            return client is not None and {"bad header", "too few frames"} <= set(
                client.stats.malformed)

        try:
            await until(pilot, garbage_counted, "the garbage dropped and counted", timeout=10)
        finally:
            raw.close(linger=0)
        await until(pilot, lambda: "odd" in app.state.cameras and
                    app.state.cameras["east-yard"].thumb_error, "the odd messages taken")
        await until(pilot, lambda: len(app.state.sessions) == 256, "the sessions, capped")
        await pilot.pause(0.6)  # a few refreshes over the odd values
        assert app.is_running
        assert "\x1b" not in tile_text(app, "north-gate")
        assert "svg" in app.export_screenshot()
        # Every detail view renders the odd values too.
        await pilot.press("1", "enter")
        await until(pilot, lambda: isinstance(app.screen, CameraScreen), "the camera detail")
        await pilot.pause(0.25)
        await pilot.press("escape")
        await pilot.press("2", "enter")
        await until(pilot, lambda: isinstance(app.screen, DroneScreen), "the drone detail")
        await pilot.pause(0.25)
        assert "svg" in app.export_screenshot()
        await pilot.press("escape")
        await pilot.press("5", "enter")
        await pilot.pause(0.25)
        assert app.is_running


async def test_keys_help_details_and_palette(make_app: Callable[..., DashboardApp],
                                             vehicle: FakeVehicle,
                                             publisher: BusClient) -> None:
    FakeDroneService(publisher)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        fly(vehicle)
        vehicle.camera_status("east-yard")
        vehicle.camera_thumbnail("east-yard")
        await until(pilot, lambda: drone_keys(app) == ["alpha-1"], "the drone's row")
        # Arrows move between tiles; enter opens the camera with its larger picture.
        await pilot.press("1", "right", "enter")
        await until(pilot, lambda: isinstance(app.screen, CameraScreen), "the camera detail")
        assert app.screen.camera_id == "east-yard"  # type: ignore[attr-defined]
        await pilot.press("escape")
        assert app.screen.query_one(CameraGrid).selected_id == "east-yard"
        # Enter on a drone opens its telemetry; its keys command it from there.
        await pilot.press("2", "enter")
        await until(pilot, lambda: isinstance(app.screen, DroneScreen), "the drone detail")
        await pilot.press("h")
        await until(pilot, lambda: isinstance(app.screen, ConfirmDialog), "the confirmation")
        await pilot.press("n", "escape")
        # Help lists every key.
        await pilot.press("question_mark")
        await until(pilot, lambda: isinstance(app.screen, HelpScreen), "help")
        await pilot.press("escape")
        # The palette finds drone commands by name, and they still ask first.
        await pilot.press("ctrl+p")
        await until(pilot, lambda: isinstance(app.screen, CommandPalette), "the palette")
        await pilot.press(*"1: land")
        await until(pilot, lambda: app.screen.query_one(CommandList).option_count == 1,
                    "the one matching command")
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, ConfirmDialog), "the confirmation")
        assert "LAND" in app.screen.body  # type: ignore[attr-defined]
        await pilot.press("n")
        # q quits.
        await pilot.press("q")
        await until(pilot, lambda: not app.is_running, "the app to quit")


async def test_recording_is_shown_with_its_disk_and_its_failure(
        make_app: Callable[..., DashboardApp], vehicle: FakeVehicle) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.state.bus.connected, "the bus heartbeat")
        assert "REC" not in status_text(app)  # this config records nothing: nothing to say
        vehicle.bus.publish(topics.RECORDER_STATUS, RecorderStatus(
            recording=True, bytes_on_disk=12_300_000_000, free_percent=41.6))
        await until(pilot, lambda: "● REC 12 GB, 42% free" in status_text(app), "recording")
        vehicle.bus.publish(topics.RECORDER_STATUS, RecorderStatus(
            recording=False, bytes_on_disk=12_300_000_000, free_percent=0.0,
            last_error="cannot write x.mp4: [Errno 28] No space left on device"))
        await until(pilot, lambda: "REC ✗ cannot write x.mp4: [Errno 28] No space left"
                    in status_text(app), "the failure named")


class FakeRecorder:
    """Answers `recorder` as the recorder does, and says so on `recorder/status`."""

    def __init__(self, bus: BusClient) -> None:
        self.bus = bus
        self.commands: list[RecordCommand] = []
        self.session: str | None = None
        bus.serve(topics.RECORDER_SERVICE, self.handle)

    def publish(self) -> None:
        self.bus.publish(topics.RECORDER_STATUS, RecorderStatus(
            recording=True, bytes_on_disk=2_000_000, free_percent=80.0,
            session_id=7 if self.session else None, session_name=self.session or ""))

    async def handle(self, env: Envelope) -> Reply:
        assert isinstance(env.message, RecordCommand)
        self.commands.append(env.message)
        self.session = env.message.name if env.message.action == "start" else None
        self.publish()
        return Reply(status="accepted")


async def test_a_recording_session_is_started_and_stopped_with_confirmation(
        make_app: Callable[..., DashboardApp], vehicle: FakeVehicle, publisher: BusClient) -> None:
    recorder = FakeRecorder(publisher)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.state.bus.connected, "the bus heartbeat")
        recorder.publish()
        await until(pilot, lambda: "● REC 2.0 MB" in status_text(app), "recording shown")
        await pilot.press("R")
        await until(pilot, lambda: isinstance(app.screen, ConfirmDialog), "the confirmation")
        assert not recorder.commands, "nothing may be sent before the confirmation"
        await pilot.press("y")
        await until(pilot, lambda: recorder.commands, "the request at the recorder")
        start = recorder.commands[0]
        assert start.action == "start" and start.name.startswith("Session ")
        await until(pilot, lambda: f"● REC {start.name!r}" in status_text(app),
                    "the session's name on the status line")
        await pilot.press("R")
        await until(pilot, lambda: isinstance(app.screen, ConfirmDialog), "the confirmation")
        dialog = app.screen
        assert isinstance(dialog, ConfirmDialog) and start.name in dialog.body
        await pilot.press("y")
        await until(pilot, lambda: len(recorder.commands) == 2, "the stop at the recorder")
        assert recorder.commands[1].action == "stop"
        await until(pilot, lambda: "● REC 2.0 MB" in status_text(app), "no session shown")


class FakeLinksService:
    """Answers `links` as the links service does, and says so on `link/<id>/status`."""

    def __init__(self, bus: BusClient) -> None:
        self.bus = bus
        self.commands: list[LinkCommand] = []
        self.forced: str | None = None
        bus.serve(topics.LINKS_SERVICE, self.handle)

    def publish(self, detail: str = "") -> None:
        self.bus.publish(topics.link_status("sat"), LinkStatus(
            link_id="sat", name="Satellite", kind="satellite", state="up", rtt_ms=610.0,
            active=True, forced=self.forced == "sat", used_today_mb=1700.0,
            budget_today_mb=2000.0))
        self.bus.publish(topics.link_status("lte"), LinkStatus(
            link_id="lte", name="4G", kind="lte-private", state="unknown",
            detail=detail or "unmeasurable: no interface wwan0 on this vehicle"))

    async def handle(self, env: Envelope) -> Reply:
        assert isinstance(env.message, LinkCommand)
        self.commands.append(env.message)
        self.forced = env.message.link_id if env.message.action == "force" else None
        self.publish()
        return Reply(status="accepted")


async def test_links_pane_marks_the_tunnel_and_forces_a_link_with_confirmation(
        make_app: Callable[..., DashboardApp], vehicle: FakeVehicle, publisher: BusClient) -> None:
    links = FakeLinksService(publisher)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.state.bus.connected, "the bus heartbeat")
        links.publish()
        table = app.screen.query_one(LinkTable)

        def row(link_id: str) -> str:
            view = app.state.links.get(link_id)
            return "" if view is None else " ".join(
                str(cell) for cell in link_row(table, view, app.state.now())[1])

        await until(pilot, lambda: row("sat").startswith("● Satellite up"),
                    "the satellite marked as carrying the tunnel")
        await until(pilot, lambda: "n/m" in row("lte"), "the 4G link unmeasurable, not down")
        await pilot.press("3")  # the links pane; its first row is the satellite
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, TextDialog), "the link's detail")
        await pilot.press("escape")
        await pilot.press("f")
        await until(pilot, lambda: isinstance(app.screen, ConfirmDialog), "the confirmation")
        assert not links.commands, "nothing may be sent before the confirmation"
        await pilot.press("y")
        await until(pilot, lambda: links.commands, "the request at the links service")
        assert (links.commands[0].action, links.commands[0].link_id) == ("force", "sat")
        await until(pilot, lambda: row("sat").startswith("F● Satellite"), "the force shown")
        await pilot.press("a")
        await until(pilot, lambda: isinstance(app.screen, ConfirmDialog), "the confirmation")
        await pilot.press("y")
        await until(pilot, lambda: len(links.commands) == 2, "the release at the service")
        assert links.commands[1].action == "release"
        await until(pilot, lambda: row("sat").startswith("● Satellite"), "the force gone")
