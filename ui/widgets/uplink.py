"""The uplink pane: who at the centre watches which stream, at what bit rate, and which
cameras the vehicle pushes up to the centre's WHIP server (↑ rows, first)."""

from __future__ import annotations

from rich.text import Text

from edge.bus.messages import PUSH_STATES, PushFeed
from edge.bus.mirror import known
from ui.format import clean, rate_text
from ui.state import DashboardState
from ui.widgets.parts import aged, part, word_style
from ui.widgets.table import Row, SyncedTable

MAX_ROWS = 50
PUSHED = "↑ centre"


class UplinkTable(SyncedTable):
    COLUMNS = (("viewer", "Viewer", 9), ("stream", "Stream", 10), ("rate", "bit/s", 5))
    FILL_LAST = True

    def sync(self, state: DashboardState, now: float) -> None:
        muted = part(self, "muted")
        rows = self._push_rows(state, now)
        if state.sessions_ts is None:
            if not rows:
                rows = [("-", (Text("no data", style=muted), Text(""), Text("")))]
        elif not state.sessions:
            if not rows:
                rows = [("-", (Text("nobody", style=muted), Text("watching", style=muted),
                               Text("")))]
        else:
            age = max(0.0, now - state.sessions_ts)
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

    def _push_rows(self, state: DashboardState, now: float) -> list[Row]:
        push = state.push
        if push is None or state.push_ts is None:
            return []
        age = max(0.0, now - state.push_ts)
        rows: list[Row] = []
        for feed in push.feeds[:MAX_ROWS]:
            word = known(feed.state, PUSH_STATES) or "unknown"
            if word == "idle":
                continue  # stopped: nothing goes up
            cam = clean(feed.camera_id, 64)
            view = state.cameras.get(cam)
            stream = (view.name if view else cam) or "?"
            profile = clean(feed.profile, 8)
            rows.append((f"push:{cam}", (
                aged(self, PUSHED, age, word_style(self, word)),
                aged(self, f"{stream}/{profile}" if profile else stream, age),
                aged(self, push_text(feed, word), age, word_style(self, word)))))
        return rows


def push_text(feed: PushFeed, word: str) -> str:
    """A pushed feed's last column: its bit rate when live, else its state and why."""
    error = clean(feed.last_error, 200)
    if word == "live":
        return rate_text(feed.kbps)
    if word == "retrying":
        return f"retry {feed.retries}" + (f": {error}" if error else "")
    if word == "failed":
        return "failed" + (f": {error}" if error else "")
    return word
