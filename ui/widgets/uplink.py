"""The uplink pane: who at the centre watches which stream, at what bit rate."""

from __future__ import annotations

from rich.text import Text

from ui.format import clean, rate_text
from ui.state import DashboardState
from ui.widgets.parts import aged, part
from ui.widgets.table import Row, SyncedTable

MAX_ROWS = 50


class UplinkTable(SyncedTable):
    COLUMNS = (("viewer", "Viewer", 9), ("stream", "Stream", 10), ("rate", "bit/s", 5))
    FILL_LAST = True

    def sync(self, state: DashboardState, now: float) -> None:
        muted = part(self, "muted")
        if state.sessions_ts is None:
            rows: list[Row] = [("-", (Text("no data", style=muted), Text(""), Text("")))]
        elif not state.sessions:
            rows = [("-", (Text("nobody", style=muted), Text("watching", style=muted),
                           Text("")))]
        else:
            age = max(0.0, now - state.sessions_ts)
            rows = []
            for i, s in enumerate(state.sessions[:MAX_ROWS]):
                cam = clean(s.camera_id, 64)
                view = state.cameras.get(cam)
                stream = (view.name if view else cam) or "?"
                profile = clean(s.profile, 8)
                key = f"{i}:{clean(s.session_id, 64)}"
                # Newer uplinks say whether a viewer waits for a camera that is down.
                waiting = clean(getattr(s, "state", ""), 16).lower() == "waiting"
                rows.append((key, (
                    aged(self, clean(s.viewer, 80) or "?", age),
                    aged(self, f"{stream}/{profile}" if profile else stream, age,
                         part(self, "warn") if waiting else None),
                    aged(self, "wait" if waiting else rate_text(s.kbps), age,
                         part(self, "warn") if waiting else None))))
        self.sync_rows(rows)
