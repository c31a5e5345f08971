"""Alerts, marks and the dashboard's own events: newest first, coloured by severity."""

from __future__ import annotations

from rich.text import Text

from ui.format import clock_text
from ui.requests import OpenEvent
from ui.severity import SEVERITY_SHORT
from ui.state import DashboardState, Event
from ui.widgets.parts import part, word_style
from ui.widgets.table import SyncedTable

MAX_ROWS = 200


class EventTable(SyncedTable):
    COLUMNS = (("time", "Time", 8), ("sev", "Sev", 4), ("source", "Source", 10),
               ("text", "Event", 20))
    FILL_LAST = True

    def __init__(self, **kwargs: str) -> None:
        super().__init__(**kwargs)
        self._rev = -1
        self._events: dict[str, Event] = {}

    def sync(self, state: DashboardState, now: float) -> None:
        if state.events_rev == self._rev:
            return
        self._rev = state.events_rev
        rows = []
        self._events = {}
        for ev in list(state.events)[:MAX_ROWS]:
            key = str(ev.seq)
            self._events[key] = ev
            sev = word_style(self, ev.severity)
            rows.append((key, (Text(clock_text(ev.ts), style=part(self, "muted")),
                               Text(SEVERITY_SHORT.get(ev.severity, ev.severity[:4].upper()),
                                    style=sev),
                               Text(ev.source, style=part(self, "name")),
                               Text(ev.text, style=sev))))
        self.sync_rows(rows)

    def selected(self, key: str) -> None:
        if key in self._events:
            self.post_message(OpenEvent(self._events[key]))
