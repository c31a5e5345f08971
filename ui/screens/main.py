"""The dashboard: every camera, drone, link, viewer and event at once."""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from typing import Protocol

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Container, Horizontal, Vertical
from textual.screen import ModalScreen, Screen
from textual.widgets import Footer

from ui.format import clock_text
from ui.requests import PANES
from ui.state import DashboardState
from ui.widgets.cameras import CameraGrid
from ui.widgets.drones import DroneTable
from ui.widgets.events import EventTable
from ui.widgets.gb_devices import GbDeviceTable
from ui.widgets.links import LinkTable
from ui.widgets.status_bar import StatusBar
from ui.widgets.timeline import Timeline
from ui.widgets.uplink import UplinkTable

log = logging.getLogger("ui")

REFRESH_HZ = 4  # the ceiling for any widget
# Cameras, links and viewers change at most once a second (their services publish at
# 1 Hz or slower): redrawing them at every other refresh loses nothing and halves
# how often the screen is composed for them.
HALF_RATE = frozenset({"cameras", "links", "uplink"})
TITLES = {"cameras": "Cameras", "drones": "Drones", "links": "Links", "uplink": "Uplink",
          "events": "Alerts and events"}
# The GB/T 28181 pane is not one of PANES (ui/requests.py): it is shown only on a vehicle
# with dome cameras, so its key follows theirs.
GB_KEY = str(len(PANES) + 1)
GB_TITLE = "GB/T 28181 devices"


class Syncable(Protocol):
    def sync(self, state: DashboardState, now: float) -> None: ...


class MainScreen(Screen[None]):
    BINDINGS = [
        *(Binding(str(i + 1), f"focus_pane('{name}')", TITLES[name], show=False)
          for i, name in enumerate(PANES)),
        Binding(GB_KEY, "focus_gb", GB_TITLE, show=False),
    ]

    def __init__(self, state: DashboardState, unsent_marks: Callable[[], int]) -> None:
        super().__init__()
        self.state = state
        self.unsent_marks = unsent_marks
        self._failed: set[str] = set()
        self._ticks = 1  # odd: the first refresh draws every pane

    def compose(self) -> ComposeResult:
        yield StatusBar(id="status")
        yield Timeline(id="timeline")  # shown only in a replay
        with Container(id="layout"):
            yield CameraGrid(id="cameras", classes="pane")
            with Vertical(id="side"):
                yield DroneTable(id="drones", classes="pane")
                with Horizontal(id="wan"):
                    yield LinkTable(id="links", classes="pane")
                    yield UplinkTable(id="uplink", classes="pane")
                yield GbDeviceTable(f"{GB_KEY} {GB_TITLE}", id="gb", classes="pane")
                yield EventTable(id="events", classes="pane")
        yield Footer()

    def on_mount(self) -> None:
        for name in PANES:
            self.query_one(f"#{name}").border_title = f"{PANES.index(name) + 1} {TITLES[name]}"
        self.set_interval(1 / REFRESH_HZ, self.refresh_panes)
        self.refresh_panes()
        self.query_one("#cameras").focus()

    def refresh_panes(self) -> None:
        """Redraw from the model; every widget skips the work when nothing it shows changed."""
        if self.app.screen is not self and not isinstance(self.app.screen, ModalScreen):
            return  # a detail view covers us
        state = self.state
        now = state.now()
        unsent = self.unsent_marks()
        self._sync("status", partial(self.query_one(StatusBar).sync, state, now, unsent))
        self._sync("timeline", partial(self.query_one(Timeline).sync, state, now))
        self._ticks += 1
        for name in PANES:
            if name in HALF_RATE and self._ticks % 2:
                continue
            widget: Syncable = self.query_one(f"#{name}")  # type: ignore[assignment]
            self._sync(name, partial(widget.sync, state, now))
        if not self._ticks % 2:  # devices report at 1 Hz, like cameras and links
            self._sync("gb", partial(self.query_one(GbDeviceTable).sync, state, now))
        self._sync("drones", partial(self._show_last_command, state))

    def _sync(self, name: str, fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception:  # one pane's bug must not take the dashboard down
            if name not in self._failed:
                self._failed.add(name)
                log.exception("refreshing the %s pane failed", name)

    def _show_last_command(self, state: DashboardState) -> None:
        latest = max((d for d in state.drones.values() if d.last_command is not None),
                     key=lambda d: d.last_command.ts if d.last_command else 0, default=None)
        drones = self.query_one("#drones", DroneTable)
        if latest is None or latest.last_command is None:
            text = "r rtl · h hold · l land · g go to"
        else:
            c = latest.last_command
            ms = (f" ({c.elapsed_ms:.0f} ms)" if c.elapsed_ms is not None and c.status != "sent"
                  else "")
            detail = f": {c.detail}" if c.detail and c.status != "accepted" else ""
            text = f"{clock_text(c.ts)} {latest.drone_id} {c.label} {c.status}{detail}{ms}"
        if drones.border_subtitle != text:
            # Setting it, even to the same text, repaints the pane.
            drones.border_subtitle = text

    def action_focus_pane(self, name: str) -> None:
        self.query_one(f"#{name}").focus()

    def action_focus_gb(self) -> None:
        pane = self.query_one(GbDeviceTable)
        if pane.display:
            pane.focus()
        else:
            self.notify("No GB/T 28181 devices: [gb28181] is not enabled in the vehicle's "
                        "config and no device has been heard.", timeout=4)
