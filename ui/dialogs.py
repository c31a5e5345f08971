"""Modal dialogs: confirm a drone command, enter a go-to target, write a mark, read an event."""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from ui.format import clean

MARK_MAX = 200


class ConfirmDialog(ModalScreen[bool]):
    """Yes or no for one dangerous action. Cancel has the focus, so Enter alone is harmless."""

    BINDINGS = [
        Binding("escape,n", "answer(False)", "Cancel"),
        Binding("y", "answer(True)", "Confirm"),
    ]

    def __init__(self, title: str, body: str, confirm: str) -> None:
        super().__init__()
        self.title_text = title
        self.body = body
        self.confirm = confirm

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="confirm"):
            yield Label(Text(self.title_text), id="dialog-title")
            yield Static(Text(self.body), id="dialog-body")
            with Horizontal(id="buttons"):
                yield Button("Cancel (n)", id="cancel")
                yield Button(Text(f"{self.confirm} (y)"), id="confirm", variant="error")

    def on_mount(self) -> None:
        self.query_one("#cancel", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(event.button.id == "confirm")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


@dataclass(frozen=True, slots=True)
class GotoTarget:
    lat: float
    lon: float
    alt_m: float


def parse_target(lat: str, lon: str, alt: str) -> GotoTarget | str:
    """The target, or what is wrong with it (in words for the commander)."""
    try:
        la, lo, al = float(lat), float(lon), float(alt)
    except ValueError:
        return "latitude, longitude and altitude must be numbers"
    if not -90 <= la <= 90:
        return "latitude must be between -90 and 90"
    if not -180 <= lo <= 180:
        return "longitude must be between -180 and 180"
    if not 0 <= al <= 1000:
        return "altitude must be between 0 and 1000 m above home"
    if la == 0 and lo == 0:
        return "0, 0 is not a place anyone means"
    return GotoTarget(la, lo, al)


class GotoDialog(ModalScreen[GotoTarget | None]):
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, drone_id: str, lat: float | None, lon: float | None,
                 alt_m: float | None) -> None:
        super().__init__()
        self.drone_id = drone_id
        self.start = (lat, lon, alt_m)

    def compose(self) -> ComposeResult:
        lat, lon, alt = self.start
        with Vertical(id="dialog", classes="goto"):
            yield Label(Text(f"Go to: {self.drone_id}"), id="dialog-title")
            yield Static("Latitude, longitude (degrees) and altitude above home (m).",
                         id="dialog-body")
            for key, label, value in (("lat", "latitude", "" if lat is None else f"{lat:.6f}"),
                                      ("lon", "longitude", "" if lon is None else f"{lon:.6f}"),
                                      ("alt", "altitude m", "" if alt is None else f"{alt:.0f}")):
                with Horizontal(classes="field"):
                    yield Label(label)
                    yield Input(value, placeholder=label, id=key)
            yield Label("", id="dialog-error")
            with Horizontal(id="buttons"):
                yield Button("Cancel", id="cancel")
                yield Button("Next", id="next", variant="primary")

    def on_mount(self) -> None:
        self.query_one("#lat", Input).focus()

    def _submit(self) -> None:
        result = parse_target(*(self.query_one(f"#{k}", Input).value.strip()
                                for k in ("lat", "lon", "alt")))
        if isinstance(result, str):
            self.query_one("#dialog-error", Label).update(Text(result))
            return
        self.dismiss(result)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        order = ["lat", "lon", "alt"]
        current = event.input.id or ""
        if current in order[:-1]:
            self.query_one(f"#{order[order.index(current) + 1]}", Input).focus()
        else:
            self._submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "next":
            self._submit()
        else:
            self.dismiss(None)

    def action_cancel(self) -> None:
        self.dismiss(None)


class MarkDialog(ModalScreen[str | None]):
    """A short note that marks this moment for the debrief."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="mark"):
            yield Label("Mark an event", id="dialog-title")
            yield Static("A short note for the debrief; Enter publishes it, Esc cancels.",
                         id="dialog-body")
            yield Input(placeholder="e.g. casualty found at north gate", max_length=MARK_MAX,
                        id="note")

    def on_mount(self) -> None:
        self.query_one("#note", Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        note = clean(event.value, MARK_MAX).strip()
        if note:
            self.dismiss(note)
        else:
            self.notify("Type a note first (Esc cancels).", severity="warning")

    def action_cancel(self) -> None:
        self.dismiss(None)


class TextDialog(ModalScreen[None]):
    """Something longer than its table cell (an alert's whole text)."""

    BINDINGS = [Binding("escape,enter,q", "close", "Close")]

    def __init__(self, title: str, body: str) -> None:
        super().__init__()
        self.title_text = title
        self.body = body

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="text"):
            yield Label(Text(self.title_text), id="dialog-title")
            yield Static(Text(self.body), id="dialog-body")
            yield Static("Esc closes", id="dialog-hint")

    def action_close(self) -> None:
        self.dismiss(None)
