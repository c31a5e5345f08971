"""The command palette's entries: open any camera or drone, command a drone, mark, help."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from functools import partial
from typing import TYPE_CHECKING

from textual.command import DiscoveryHit, Hit, Hits, Provider

from ui.keys import ACTION_NAMES

if TYPE_CHECKING:
    from ui.app import DashboardApp

Entry = tuple[str, str, Callable[[], object]]


class DashboardCommands(Provider):
    @property
    def dashboard(self) -> DashboardApp:
        return self.app  # type: ignore[return-value]

    def entries(self) -> list[Entry]:
        app = self.dashboard
        state = app.state
        out: list[Entry] = [
            ("Mark an event", "a note for the debrief, published on the bus", app.action_mark),
            ("Help: keys", "every key the dashboard answers to", app.action_help),
        ]
        for cam in state.cameras.values():
            out.append((f"Camera: {cam.name}", f"open {cam.camera_id}",
                        partial(app.open_camera, cam.camera_id)))
        for d in state.drone_list():
            if d.placeholder:
                continue
            out.append((f"Drone: {d.drone_id}", "open its telemetry",
                        partial(app.open_drone, d.drone_id)))
            for action, name in ACTION_NAMES.items():
                out.append((f"Drone {d.drone_id}: {name}", "asks for confirmation first",
                            partial(app.drone_command, d.drone_id, action)))
        for i, pane in enumerate(("cameras", "drones", "links", "uplink", "events")):
            out.append((f"Go to pane: {pane}", f"key {i + 1}", partial(app.focus_pane, pane)))
        return out

    async def discover(self) -> Hits:
        for title, help_text, callback in self.entries():
            yield DiscoveryHit(title, callback, help=help_text)

    async def search(self, query: str) -> AsyncIterator[Hit]:
        matcher = self.matcher(query)
        for title, help_text, callback in self.entries():
            score = matcher.match(title)
            if score > 0:
                yield Hit(score, matcher.highlight(title), callback, help=help_text)
