"""The command palette's entries: open any camera or drone, command a drone, mark, help.

Each entry posts the same message a key would (:mod:`ui.requests`), or runs the
app's own action, so the palette needs nothing of the app but its state."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from functools import partial

from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.message import Message

from ui.keys import ACTION_NAMES
from ui.requests import PANES, CommandDrone, FocusPane, OpenCamera, OpenDrone
from ui.state import DashboardState

Entry = tuple[str, str, Callable[[], object]]


class DashboardCommands(Provider):
    def _post(self, message: Message) -> Callable[[], object]:
        return partial(self.app.post_message, message)

    def entries(self) -> list[Entry]:
        out: list[Entry] = [
            ("Mark an event", "a note for the debrief, published on the bus",
             partial(self.app.run_action, "mark")),
            ("Help: keys", "every key the dashboard answers to",
             partial(self.app.run_action, "help")),
        ]
        state = getattr(self.app, "state", None)
        if isinstance(state, DashboardState):
            for cam in state.cameras.values():
                out.append((f"Camera: {cam.name}", f"open {cam.camera_id}",
                            self._post(OpenCamera(cam.camera_id))))
            for d in state.drone_list():
                if d.placeholder:
                    continue
                out.append((f"Drone: {d.drone_id}", "open its telemetry",
                            self._post(OpenDrone(d.drone_id))))
                for action, name in ACTION_NAMES.items():
                    out.append((f"Drone {d.drone_id}: {name}", "asks for confirmation first",
                                self._post(CommandDrone(d.drone_id, action))))
        for i, pane in enumerate(PANES):
            out.append((f"Go to pane: {pane}", f"key {i + 1}", self._post(FocusPane(pane))))
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
