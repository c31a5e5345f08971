"""Every key, from :data:`ui.keys.HELP`."""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from edge.bus.mirror import OLD_S, SILENT_S, STALE_S
from ui.keys import HELP

KEY_WIDTH = 16


def _section(title: str, rows: tuple[tuple[str, str], ...]) -> list[RenderableType]:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold", no_wrap=True, width=KEY_WIDTH)
    table.add_column()
    for key, what in rows:
        table.add_row(Text(key), Text(what))
    return [Text(title, style="bold underline"), table, Text("")]


def help_table() -> Group:
    parts: list[RenderableType] = []
    for section, keys in HELP:
        parts += _section(section, keys)
    parts += _section("Colours", (
        ("dim", f"a value older than {STALE_S:.0f} s"),
        ("red", f"a value older than {OLD_S:.0f} s, or a device down"),
        ("SILENT", f"no status from a device's service for over {SILENT_S:.0f} s: what it "
                   "said last is no longer believed"),
    ))
    return Group(*parts)


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark", "close", "Close")]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="dialog", classes="help"):
            yield Static(Text("Keys", style="bold"), id="dialog-title")
            yield Static(help_table(), id="dialog-body")
            yield Static("Esc closes", id="dialog-hint")

    def action_close(self) -> None:
        self.dismiss(None)
