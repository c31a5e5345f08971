"""A small keyed table for the panes: given its whole content each refresh, it redraws
only the rows whose text or style changed.

Textual's DataTable re-renders every cell of the table whenever one cell changes
(its row cache is keyed on an update counter), which at 4 refreshes a second of
moving telemetry was the largest part of the dashboard's CPU use; these tables
are a few rows of one-line cells, so a line-API widget with a per-row cache does.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.segment import Segment
from rich.text import Text
from textual.binding import Binding
from textual.events import Click
from textual.geometry import Size
from textual.strip import Strip
from textual.widget import Widget

from ui.widgets.parts import CONSOLE, PART_CLASSES, fit_text, part

Row = tuple[str, tuple[Text, ...]]
CELL_PADDING = 1

def signature(cells: tuple[Text, ...]) -> tuple[object, ...]:
    # Text equality ignores the text's own style, and staleness is only a style.
    return tuple((t.plain, t.style, tuple(t.spans)) for t in cells)


class SyncedTable(Widget, can_focus=True):
    """Rows keyed by id, a header, a cursor row when focused; enter selects."""

    COMPONENT_CLASSES = {"table--header", "table--cursor", "table--cursor-blurred"} | PART_CLASSES
    # (key, label, width); with FILL_LAST the last column takes what width is left.
    COLUMNS: tuple[tuple[str, str, int], ...] = ()
    FILL_LAST = False
    BINDINGS = [
        Binding("up", "cursor(-1)", "Up", show=False),
        Binding("down", "cursor(1)", "Down", show=False),
        Binding("pageup", "cursor(-10)", "Page up", show=False),
        Binding("pagedown", "cursor(10)", "Page down", show=False),
        Binding("home", "cursor(-100000)", "First", show=False),
        Binding("end", "cursor(100000)", "Last", show=False),
        Binding("enter", "select", "Open"),
    ]

    def __init__(self, **kwargs: str) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._keys: list[str] = []
        self._cells: dict[str, tuple[Text, ...]] = {}
        self._sigs: dict[str, tuple[object, ...]] = {}
        self._strips: dict[str, Strip] = {}
        self._header: Strip | None = None
        self._widths: list[int] = [w for _, _, w in self.COLUMNS]
        self.cursor_row = 0
        self._top = 0  # first row shown

    # -- content -----------------------------------------------------------------
    @property
    def selected_key(self) -> str | None:
        if 0 <= self.cursor_row < len(self._keys):
            return self._keys[self.cursor_row]
        return None

    def sync_rows(self, rows: Sequence[Row]) -> None:
        keys = [k for k, _ in rows]
        changed = False
        for key, cells in rows:
            sig = signature(cells)
            if self._sigs.get(key) != sig:
                self._sigs[key] = sig
                self._cells[key] = cells
                self._strips.pop(key, None)
                changed = True
        if keys != self._keys:
            selected = self.selected_key
            gone = set(self._keys) - set(keys)
            for key in gone:
                self._sigs.pop(key, None)
                self._cells.pop(key, None)
                self._strips.pop(key, None)
            resized = len(keys) != len(self._keys)
            self._keys = keys
            if selected in keys:
                self.cursor_row = keys.index(selected)
            self.cursor_row = max(0, min(self.cursor_row, len(keys) - 1))
            self._scroll_to_cursor()
            height = self.styles.height
            if resized and (height is None or height.is_auto):
                self.refresh(layout=True)  # the pane grows with its rows
            changed = True
        if changed:
            self.refresh()

    # -- layout ------------------------------------------------------------------
    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        return 1 + max(1, len(self._keys))

    def on_resize(self) -> None:
        widths = [w for _, _, w in self.COLUMNS]
        if self.FILL_LAST and widths:
            fixed = sum(w + 2 * CELL_PADDING for w in widths[:-1])
            widths[-1] = max(widths[-1], self.size.width - fixed - 2 * CELL_PADDING)
        if widths != self._widths:
            self._widths = widths
            self._strips.clear()
            self._header = None
            self.refresh()
        self._scroll_to_cursor()

    def on_focus(self) -> None:
        self.refresh()

    def on_blur(self) -> None:
        self.refresh()

    def _visible_rows(self) -> int:
        return max(1, self.size.height - 1)

    def _scroll_to_cursor(self) -> None:
        visible = self._visible_rows()
        if self.cursor_row < self._top:
            self._top = self.cursor_row
        elif self.cursor_row >= self._top + visible:
            self._top = self.cursor_row - visible + 1
        self._top = max(0, min(self._top, max(0, len(self._keys) - visible)))

    # -- drawing -----------------------------------------------------------------
    def _line(self, cells: Sequence[Text]) -> Strip:
        pad = Text(" " * CELL_PADDING)
        parts: list[Text] = []
        for cell, width in zip(cells, self._widths, strict=False):
            parts += [pad, fit_text(cell, width), pad]
        segments = list(Text.assemble(*parts, no_wrap=True).render(CONSOLE, end=""))
        return Strip(segments)

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        base = self.rich_style
        if y == 0:
            if self._header is None:
                header_style = self.get_component_rich_style("table--header", partial=True)
                self._header = self._line([Text(label, style=header_style)
                                           for _, label, _ in self.COLUMNS])
            more = len(self._keys) - self._top - self._visible_rows()
            line = self._header
            if more > 0:
                line = line.crop(0, max(0, width - 8)).adjust_cell_length(max(0, width - 8))
                note = Segment(f" ↓{more:<5} "[:8], part(self, "muted"))
                line = Strip.join([line, Strip([note])])
            return line.adjust_cell_length(width).apply_style(base)
        index = self._top + y - 1
        if index >= len(self._keys):
            return Strip.blank(width, base)
        key = self._keys[index]
        strip = self._strips.get(key)
        if strip is None:
            strip = self._strips[key] = self._line(self._cells[key])
        strip = strip.adjust_cell_length(width)
        if index == self.cursor_row:
            name = "table--cursor" if self.has_focus else "table--cursor-blurred"
            strip = strip.apply_style(self.get_component_rich_style(name))
        return strip.apply_style(base)

    # -- keys and mouse ----------------------------------------------------------
    def action_cursor(self, delta: int) -> None:
        if not self._keys:
            return
        row = max(0, min(len(self._keys) - 1, self.cursor_row + delta))
        if row != self.cursor_row:
            self.cursor_row = row
            self._scroll_to_cursor()
            self.refresh()

    def action_select(self) -> None:
        key = self.selected_key
        if key is not None:
            self.selected(key)

    def selected(self, key: str) -> None:
        """Enter on a row; subclasses say what that opens."""

    def on_click(self, event: Click) -> None:
        index = self._top + event.y - 1
        if event.y >= 1 and 0 <= index < len(self._keys):
            self.cursor_row = index
            self.refresh()
            if event.chain >= 2:
                self.action_select()

