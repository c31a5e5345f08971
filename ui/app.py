"""The commander's dashboard application."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any, ClassVar

from textual import on
from textual.actions import SkipAction
from textual.app import App
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.worker import Worker

from edge.bus import topics
from edge.bus.endpoints import Endpoints
from edge.bus.messages import ReplayCommand, ReplayStatus, SchemaError
from edge.bus.mirror import Clock
from edge.config import VehicleConfig
from ui.adopt import AdoptDialog, adopt_command, adoptable
from ui.bridge import BusBridge
from ui.commands import (
    CommandFlow,
    Refusal,
    commandable,
    drone_command,
    link_command,
    push_command,
    record_command,
)
from ui.dialogs import GotoDialog, MarkDialog, TextDialog
from ui.format import clock_text, finite
from ui.palette import DashboardCommands
from ui.replay import control
from ui.requests import (
    CommandDrone,
    CommandLink,
    CommandPush,
    FocusPane,
    OpenCamera,
    OpenDrone,
    OpenEvent,
    OpenLink,
    SteerCamera,
)
from ui.screens.camera import CameraScreen
from ui.screens.drone import DroneScreen
from ui.screens.help import HelpScreen
from ui.screens.main import MainScreen
from ui.severity import SEVERITY_SHORT
from ui.state import DashboardState
from ui.steering import steer
from ui.widgets import parts
from ui.widgets.gb_devices import AdoptGbChannel, OpenGbDevice, device_name, gb_device_text
from ui.widgets.links import link_text

STYLES = Path(__file__).parent / "styles"


class DashboardApp(App[None]):
    CSS_PATH = [STYLES / "app.tcss", STYLES / "dialogs.tcss"]
    TITLE = "edge dashboard"
    COMMANDS = App.COMMANDS | {DashboardCommands}
    # Narrow (80 columns): panes stacked; wide: cameras left, the rest right.
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (140, "-wide")]
    VERTICAL_BREAKPOINTS = [(0, "-short"), (34, "-tall")]
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "Quit"),
        # In a terminal in raw mode Ctrl-C is a key, not a signal: it must quit too.
        Binding("ctrl+c", "quit", "Quit", show=False, priority=True),
        Binding("question_mark", "help", "Help"),
        Binding("m", "mark", "Mark"),
        Binding("R", "record", "Record", show=False),
        # Declaring any palette key replaces Textual's own ctrl+p, so both are here.
        Binding("ctrl+p", "command_palette", "Palette", priority=True),
        Binding("colon", "command_palette", "Palette", show=False),
        # Replay controls (ui/replay.py): they do something only in a replay. The arrows
        # are the panes' own outside one, so they pass the key on there (SkipAction).
        Binding("space", "replay('play_pause')", "Play/pause", show=False),
        Binding("left", "replay_seek('back')", "Back 10 s", show=False, priority=True),
        Binding("right", "replay_seek('forward')", "Forward 10 s", show=False, priority=True),
        Binding("[", "replay('slower')", "Slower", show=False),
        Binding("]", "replay('faster')", "Faster", show=False),
        Binding("n", "replay('next_mark')", "Next mark", show=False),
        Binding("p", "replay('prev_mark')", "Previous mark", show=False),
        Binding(".", "replay('step')", "Step 1 s", show=False),
    ]

    def __init__(self, config: VehicleConfig | None = None, *,
                 endpoints: Endpoints | None = None,
                 bridge: BusBridge | None = None,
                 state: DashboardState | None = None,
                 clock: Clock | None = None,
                 stop: asyncio.Event | None = None,
                 **bridge_options: Any) -> None:
        super().__init__()
        self.config = config
        self.state = state or DashboardState(config, clock)
        if bridge is None and endpoints is not None:
            bridge = BusBridge(endpoints, self.state, **bridge_options)
        self.bridge = bridge
        self.command_flow = CommandFlow(self, self.state, bridge)
        self.stop_event = stop
        self._bridge_worker: Worker[None] | None = None
        if config is not None:
            self.sub_title = config.vehicle

    def get_default_screen(self) -> Screen[Any]:
        return MainScreen(self.state, self._unsent_marks)

    def _unsent_marks(self) -> int:
        return self.bridge.unsent_marks if self.bridge else 0

    def on_mount(self) -> None:
        self.theme_changed_signal.subscribe(self, lambda _theme: parts.clear_cache())
        if self.bridge is not None:
            self.bridge.attach(self)
            self._bridge_worker = self.run_worker(self.bridge.run(), name="bus-bridge",
                                                  group="bus", exit_on_error=False)
        if self.stop_event is not None:
            self.run_worker(self._exit_on_stop(self.stop_event), name="stop-signal")

    async def _exit_on_stop(self, stop: asyncio.Event) -> None:
        # SIGINT / SIGTERM from outside (the demo's signal handlers set this).
        await stop.wait()
        await self.action_quit()

    async def on_unmount(self) -> None:
        await self._stop_bridge()

    async def _stop_bridge(self) -> None:
        worker, self._bridge_worker = self._bridge_worker, None
        if worker is None:
            return
        worker.cancel()
        with contextlib.suppress(Exception):
            await worker.wait()

    async def action_quit(self) -> None:
        await self._stop_bridge()
        self.exit()

    # -- bus events ----------------------------------------------------------------
    def on_bus_bridge_lost(self, message: BusBridge.Lost) -> None:
        self.notify(f"Bus gone: {message.detail}. Reconnecting; values shown are last known.",
                    title="BUS GONE", severity="error", timeout=8)

    def on_bus_bridge_connected(self, message: BusBridge.Connected) -> None:
        if self.state.bus.reconnects or any(e.text.startswith("bus gone")
                                            for e in self.state.events):
            self.notify("Bus back: live data again.", title="bus", timeout=4)

    def on_bus_bridge_alert_received(self, message: BusBridge.AlertReceived) -> None:
        ev = message.event
        self.notify(f"{ev.source}: {ev.text}"[:300],
                    title=f"{SEVERITY_SHORT.get(ev.severity, ev.severity)} {clock_text(ev.ts)}",
                    severity="error", timeout=10)

    # -- what panes, screens and the palette ask for (ui/requests.py) ------------------
    @on(FocusPane)
    def focus_pane(self, message: FocusPane) -> None:
        if not isinstance(self.screen, MainScreen):
            self.pop_screen()
        self.call_later(lambda: self.screen.query_one(f"#{message.pane}").focus())

    @on(OpenCamera)
    def open_camera(self, message: OpenCamera) -> None:
        if message.camera_id in self.state.cameras:
            self.push_screen(CameraScreen(self.state, message.camera_id))

    @on(OpenDrone)
    def open_drone(self, message: OpenDrone) -> None:
        if message.drone_id in self.state.drones:
            self.push_screen(DroneScreen(self.state, message.drone_id))

    @on(OpenEvent)
    def open_event(self, message: OpenEvent) -> None:
        event = message.event
        title = (f"{SEVERITY_SHORT.get(event.severity, event.severity)} "
                 f"{clock_text(event.ts)} {event.source}")
        self.push_screen(TextDialog(title, event.text))

    @on(CommandDrone)
    def command_drone(self, message: CommandDrone) -> None:
        self.drone_command(message.drone_id, message.action)

    @on(OpenLink)
    def open_link(self, message: OpenLink) -> None:
        view = self.state.links.get(message.link_id)
        if view is not None:
            self.push_screen(TextDialog(f"Link {view.name}", link_text(view)))

    @on(CommandLink)
    def command_link(self, message: CommandLink) -> None:
        self.run_worker(self._link_flow(message.link_id, message.action), group="dialogs",
                        name=f"link-{message.action}")

    async def _link_flow(self, link_id: str, action: str) -> None:
        command = link_command(self.state, link_id, action)
        if isinstance(command, Refusal):
            self.notify(command.text, severity=command.severity)
            return
        await self.command_flow.run(command)

    @on(CommandPush)
    def command_push(self, message: CommandPush) -> None:
        self.run_worker(self._push_flow(message.camera_id), group="dialogs", name="push")

    async def _push_flow(self, camera_id: str) -> None:
        command = push_command(self.state, camera_id)
        if isinstance(command, Refusal):
            self.notify(command.text, severity=command.severity)
            return
        await self.command_flow.run(command)

    @on(SteerCamera)
    def steer_camera(self, message: SteerCamera) -> None:
        self.run_worker(steer(self.command_flow, message), group="ptz",
                        name=f"ptz-{message.request.action}")

    @on(OpenGbDevice)
    def open_gb_device(self, message: OpenGbDevice) -> None:
        heard = self.state.gb_devices.get(message.device_id)
        if heard is not None:
            self.push_screen(TextDialog(f"GB/T 28181 device {device_name(heard.message)}",
                                        gb_device_text(self.state, message.device_id)))

    @on(AdoptGbChannel)
    def adopt_gb_channel(self, message: AdoptGbChannel) -> None:
        self.run_worker(self._adopt_flow(message.device_id, message.channel_id),
                        group="dialogs", name="gb-adopt")

    async def _adopt_flow(self, device_id: str, channel_id: str) -> None:
        """Propose an id and name, let the commander change them, confirm, ask gb28181."""
        found = adoptable(self.state, device_id, channel_id)
        if isinstance(found, Refusal):
            self.notify(found.text, severity=found.severity)
            return
        choice = await self.push_screen_wait(AdoptDialog(found))
        if choice is None:
            return
        reply = await self.command_flow.run(adopt_command(found, choice))
        if reply is not None and reply.status == "accepted":
            self.state.gb_adopted(device_id, channel_id, choice.camera_id)

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    # -- marks -------------------------------------------------------------------------
    def action_mark(self) -> None:
        self.run_worker(self._mark_flow(), group="dialogs", name="mark")

    async def _mark_flow(self) -> None:
        note = await self.push_screen_wait(MarkDialog())
        if not note:
            return
        if self.bridge is None:
            self.notify("No bus: the mark was not published.", severity="error")
            return
        if self.bridge.mark(note):
            self.notify(f"Marked: {note}", title="mark", timeout=4)
        else:
            self.notify(f"Bus gone: mark kept and sent when it is back: {note}",
                        title="mark", severity="warning", timeout=8)

    # -- recording ---------------------------------------------------------------------
    def action_record(self) -> None:
        self.run_worker(self._record_flow(), group="dialogs", name="record")

    async def _record_flow(self) -> None:
        command = record_command(self.state)
        if isinstance(command, Refusal):
            self.notify(command.text, severity=command.severity)
            return
        await self.command_flow.run(command)

    # -- replay controls (no confirmation: they only move the replay's clock) ------------
    def action_replay_seek(self, key: str) -> None:
        if not self.state.replay.active or not isinstance(self.screen, MainScreen):
            raise SkipAction()  # the focused pane's own arrow, or a dialog's
        self.action_replay(key)

    def action_replay(self, key: str) -> None:
        status = self.state.replay.status
        if status is None:
            self.notify("Not a replay: replay keys do nothing here.", timeout=3)
            return
        request = control(status, self.state.now(), key)
        if isinstance(request, str):
            self.notify(f"Replay: {request}.", timeout=3)
            return
        self.run_worker(self._replay_request(request), group="replay",
                        name=f"replay-{request.action}")

    async def _replay_request(self, request: ReplayCommand) -> None:
        if self.bridge is None:
            self.notify("No bus: the replay control was not sent.", severity="error")
            return
        reply = await self.bridge.request(topics.REPLAY_SERVICE, request)
        if reply.status != "accepted":
            detail = str(reply.detail)[:200]
            self.notify(f"Replay {request.action}: {reply.status}" +
                        (f": {detail}" if detail else ""), title="replay",
                        severity="warning", timeout=5)
            return
        if not isinstance(reply.data, dict) or "position_ns" not in reply.data:
            return  # no status with it: the next replay/status says where it is
        try:
            # The status after it, at once rather than at the next replay/status.
            self.state.take_replay(ReplayStatus.from_body(reply.data))
        except SchemaError:
            pass

    # -- drone commands ----------------------------------------------------------------
    def drone_command(self, drone_id: str, action: str) -> None:
        """Ask (a target, for `goto`), then the command flow: all in a worker."""
        self.run_worker(self._drone_flow(drone_id, action), group="dialogs",
                        name=f"command-{action}")

    async def _drone_flow(self, drone_id: str, action: str) -> None:
        found = commandable(self.state, drone_id)
        if isinstance(found, Refusal):
            self.notify(found.text, severity=found.severity)
            return
        d, sysid = found
        target = None
        if action == "goto":
            t = d.telemetry
            target = await self.push_screen_wait(GotoDialog(
                drone_id, finite(t.lat) if t else None, finite(t.lon) if t else None,
                finite(t.alt_rel_m) if t else None))
            if target is None:
                return
        await self.command_flow.run(drone_command(self.state, d, sysid, action, target))
