"""Parts of the detail views: a large thumbnail and a key/value list."""

from __future__ import annotations

from rich.style import Style
from rich.table import Table
from rich.text import Text
from textual.strip import Strip
from textual.widget import Widget
from textual.widgets import Static

from ui.state import Thumb
from ui.widgets.cameras import ThumbCache
from ui.widgets.parts import PART_CLASSES, text_strip

Field = tuple[str, Text]


class ThumbView(Widget):
    """A thumbnail as large as the widget allows."""

    def __init__(self, **kwargs: str) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._cache = ThumbCache()
        self._thumb: Thumb | None = None
        self._note = "no picture"
        self._key: tuple[object, ...] | None = None

    def show(self, thumb: Thumb | None, note: str = "no picture") -> None:
        key = (id(thumb), thumb.rev if thumb else 0, note)
        if key != self._key:
            self._key = key
            self._thumb, self._note = thumb, note
            self.refresh()

    def render_line(self, y: int) -> Strip:
        width, height = self.size
        base = self.rich_style
        if self._thumb is None:
            if y == height // 2:
                return text_strip(Text(self._note, justify="center", style=Style(dim=True)),
                                  width, base)
            return Strip.blank(width, base)
        lines = self._cache.lines(self._thumb, width, height)
        if y >= len(lines):
            return Strip.blank(width, base)
        return Strip(lines[y]).adjust_cell_length(width).apply_style(base)


class FieldList(Static):
    """Label / value rows; updates only when a value's text or style changes."""

    COMPONENT_CLASSES = PART_CLASSES

    def __init__(self, **kwargs: str) -> None:
        super().__init__("", **kwargs)  # type: ignore[arg-type]
        self._key: tuple[object, ...] | None = None

    def show(self, fields: list[Field]) -> None:
        key = tuple((label, value.plain, value.style) for label, value in fields)
        if key == self._key:
            return
        self._key = key
        table = Table.grid(padding=(0, 1))
        table.add_column(style="bold", no_wrap=True)
        table.add_column(overflow="fold")
        for label, value in fields:
            table.add_row(label, value)
        self.update(table)
