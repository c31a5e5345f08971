"""The replay's timeline, under the status line: the span replayed, where the replay is,
and the marks and alerts on it. Shown only in a replay (see :mod:`ui.replay`).

The replay status says the span, the position and where the marks and alerts
are, so a drill's marks are on the bar from the start; those the dashboard
hears (the event log's, within the span) are drawn too.
"""

from __future__ import annotations

from rich.text import Text
from textual.widget import Widget

from ui.format import clock_text
from ui.state import DashboardState
from ui.widgets.parts import PART_CLASSES, part

RAIL = "─"
PLAYED = "━"
HERE = "●"
MARK = "▲"
ALERT = "!"


def positions(start: float, end: float, times: list[float], width: int) -> list[int]:
    """The column (0 to width-1) of each of `times` on a rail of `width` cells."""
    if width <= 0:
        return []
    span = max(end - start, 1e-9)
    return [min(width - 1, max(0, int((t - start) / span * (width - 1) + 0.5))) for t in times]


class Timeline(Widget):
    COMPONENT_CLASSES = PART_CLASSES

    def __init__(self, **kwargs: str) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._key: tuple[object, ...] | None = None
        self.span: tuple[float, float] | None = None
        self.position = 0.0
        self.marks: list[float] = []
        self.alerts: list[float] = []

    def sync(self, state: DashboardState, now: float) -> None:
        status = state.replay.status
        self.set_class(status is not None, "-replay")
        if status is None:
            return
        key = (state.replay.rev, int(now), state.events_rev)
        if key == self._key:
            return
        self._key = key
        start, end = status.start_ns / 1e9, status.end_ns / 1e9
        self.span = (start, max(start, end))
        self.position = min(max(now, start), self.span[1])
        inside = [e for e in state.events if start <= e.ts <= end]
        # The replay lists where they are; what the dashboard heard (a mark made now,
        # or a replay that lists none) is drawn too.
        self.marks = sorted({e.ts for e in inside if e.kind == "mark"}
                            | {t / 1e9 for t in status.marks_ns})
        self.alerts = sorted({e.ts for e in inside if e.kind == "alert"}
                             | {t / 1e9 for t in status.alerts_ns})
        self.refresh()

    def render(self) -> Text:
        if self.span is None:
            return Text("")
        start, end = self.span
        left, right = f"{clock_text(start)} ", f" {clock_text(end)}"
        width = self.content_region.width - len(left) - len(right)
        if width < 3:
            return Text(clock_text(self.position), no_wrap=True)
        cells = [RAIL] * width
        styles = [part(self, "muted")] * width
        here = positions(start, end, [self.position], width)[0]
        for i in range(here):
            cells[i], styles[i] = PLAYED, part(self, "accent")
        for col in positions(start, end, self.alerts, width):
            cells[col], styles[col] = ALERT, part(self, "bad")
        for col in positions(start, end, self.marks, width):
            cells[col], styles[col] = MARK, part(self, "mark")
        cells[here], styles[here] = HERE, part(self, "name")
        text = Text(left, style=part(self, "muted"), no_wrap=True, overflow="ellipsis")
        for cell, style in zip(cells, styles, strict=True):
            text.append(cell, style)
        text.append(right, part(self, "muted"))
        return text

    def on_resize(self) -> None:
        self.refresh()
