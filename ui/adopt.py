"""Adopting a GB/T 28181 channel as a camera from the dashboard.

`a` on a channel in the GB pane: :func:`adoptable` says why not (no such channel, a
camera already) or what to propose, :class:`AdoptDialog` lets the commander change
the camera's id and name, and :func:`adopt_command` is the confirmed request
(:class:`~edge.bus.messages.GbAdopt` to `gb28181`, which appends the camera to its
config file) for the usual command flow (:mod:`ui.commands`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from edge.bus import topics
from edge.bus.messages import GbAdopt
from edge.config import ID_PATTERN
from ui.commands import Command, Refusal
from ui.format import clean
from ui.state import DashboardState
from ui.widgets.gb_devices import channel_name, device_name

NAME_MAX = 64  # a camera's name in the config


@dataclass(frozen=True, slots=True)
class Adoptable:
    """A channel that may become a camera, and what the dialog proposes for it."""

    device_id: str
    channel_id: str
    device_name: str
    channel_name: str
    camera_id: str  # proposed: gb-<last 4 digits of the device>-<the channel's place>
    name: str  # proposed: the channel's name
    taken: frozenset[str]  # camera ids this dashboard knows of


@dataclass(frozen=True, slots=True)
class AdoptChoice:
    camera_id: str
    name: str


def proposed_id(device_id: str, place: int, taken: frozenset[str]) -> str:
    """`gb-<last 4 digits of the device>-<n>`, the channel's place in its catalog; a
    suffix if that is taken already."""
    base = f"gb-{re.sub('[^a-z0-9]', '', device_id[-4:].lower()) or 'dev'}-{place}"
    if base not in taken:
        return base
    return next(f"{base}-{n}" for n in range(2, len(taken) + 3) if f"{base}-{n}" not in taken)


def adoptable(state: DashboardState, device_id: str, channel_id: str) -> Adoptable | Refusal:
    heard = state.gb_devices.get(device_id)
    if heard is None:
        return Refusal("No GB/T 28181 device there: nothing to adopt.", "warning")
    if not channel_id:
        return Refusal("Choose one of the device's channels (the rows under it): a adopts "
                       "that channel as a camera.", "information")
    s = heard.message
    found = next(((i, c) for i, c in enumerate(s.channels, 1) if c.channel_id == channel_id),
                 None)
    if found is None:
        return Refusal(f"{device_name(s)} no longer lists channel {clean(channel_id, 20)}.",
                       "warning")
    place, channel = found
    camera = state.gb_cameras.get((device_id, channel_id))
    if camera is not None:
        return Refusal(f"{channel_name(channel)} is camera {camera} already.", "information")
    taken = frozenset(state.cameras)
    return Adoptable(device_id, channel_id, device_name(s), channel_name(channel),
                     proposed_id(device_id, place, taken),
                     clean(channel.name, NAME_MAX).strip() or f"{device_name(s)} {place}",
                     taken)


def check_choice(camera_id: str, name: str, taken: frozenset[str]) -> AdoptChoice | str:
    """The id and name, or what is wrong with them (in words for the commander)."""
    camera_id, name = camera_id.strip(), " ".join(name.split())
    if re.fullmatch(ID_PATTERN, camera_id) is None:
        return ("the camera id takes a-z, 0-9, - and _ (at most 32, not starting with - "
                "or _)")
    if camera_id in taken:
        return f"there is a camera {camera_id} already: choose another id"
    if not name:
        return "give the camera a name"
    if len(name) > NAME_MAX or not name.isprintable():
        return f"the name is at most {NAME_MAX} printable characters"
    return AdoptChoice(camera_id, name)


class AdoptDialog(ModalScreen[AdoptChoice | None]):
    """The new camera's id and name, proposed and editable; Next leads to the confirmation."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, adopt: Adoptable) -> None:
        super().__init__()
        self.adopt = adopt

    def compose(self) -> ComposeResult:
        a = self.adopt
        with Vertical(id="dialog", classes="adopt"):
            yield Label(Text(f"Adopt as a camera: {a.channel_name}"), id="dialog-title")
            yield Static(Text(f"Channel {a.channel_id} of {a.device_name} ({a.device_id}) "
                              "becomes a camera of the vehicle: its id and name."),
                         id="dialog-body")
            for key, label, value in (("camera-id", "camera id", a.camera_id),
                                      ("camera-name", "name", a.name)):
                with Horizontal(classes="field"):
                    yield Label(label)
                    yield Input(value, placeholder=label, id=key,
                                max_length=NAME_MAX if key == "camera-name" else 32)
            yield Label("", id="dialog-error")
            with Horizontal(id="buttons"):
                yield Button("Cancel", id="cancel")
                yield Button("Next", id="next", variant="primary")

    def on_mount(self) -> None:
        self.query_one("#camera-id", Input).focus()

    def _submit(self) -> None:
        result = check_choice(self.query_one("#camera-id", Input).value,
                              self.query_one("#camera-name", Input).value, self.adopt.taken)
        if isinstance(result, str):
            self.query_one("#dialog-error", Label).update(Text(result))
            return
        self.dismiss(result)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if event.input.id == "camera-id":
            self.query_one("#camera-name", Input).focus()
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


def adopt_command(a: Adoptable, choice: AdoptChoice) -> Command:
    return Command(
        service=topics.GB28181_SERVICE,
        request=GbAdopt(device_id=a.device_id, channel_id=a.channel_id,
                        camera_id=choice.camera_id, name=choice.name),
        subject=choice.camera_id, label="Adopt",
        name=f"adopt {a.channel_name} as camera {choice.camera_id}",
        title=f"Add camera {choice.camera_id} to the vehicle?",
        body=(f"Channel {a.channel_name} ({a.channel_id}) of {a.device_name} becomes camera "
              f"{choice.camera_id}, named {choice.name!r}: the gb28181 service appends it to "
              "the vehicle's config file (nothing else in the file changes). Its camera "
              "service is started afterwards (the demo starts it itself)."),
        kind="GB/T 28181")
