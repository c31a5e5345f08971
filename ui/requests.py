"""What a pane, screen or palette entry asks the dashboard to do, as Textual messages.

They bubble up to :class:`~ui.app.DashboardApp`, which handles each with ``@on``;
so a widget or screen never calls the app, and nothing under ``ui/screens`` or
``ui/widgets`` imports ``ui.app``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from textual.message import Message

from edge.bus.messages import PtzCommand, Reply
from ui.state import Event

Pane = Literal["cameras", "drones", "links", "uplink", "events"]
PANES: tuple[Pane, ...] = ("cameras", "drones", "links", "uplink", "events")


@dataclass
class OpenCamera(Message):
    camera_id: str


@dataclass
class OpenDrone(Message):
    drone_id: str


@dataclass
class OpenEvent(Message):
    """An event's whole text, longer than its cell."""

    event: Event


@dataclass
class FocusPane(Message):
    pane: Pane


@dataclass
class CommandDrone(Message):
    """A drone command (`rtl`, `hold`, `land`, `goto`): the app asks for what it needs
    (a target), then confirms, sends and shows the answer (:mod:`ui.commands`)."""

    drone_id: str
    action: str


@dataclass
class OpenLink(Message):
    """A WAN link's every figure and what its service says about it."""

    link_id: str


@dataclass
class CommandLink(Message):
    """Force the tunnel to the centre onto a WAN link (`force`), or give the choice back to
    the links service's policy (`release`); the app confirms, sends and shows the answer."""

    link_id: str
    action: str


@dataclass
class CommandPush(Message):
    """Start pushing a camera up to the centre's WHIP server, or stop it (whichever it is
    not doing now); the app confirms, sends and shows the answer."""

    camera_id: str


@dataclass
class SteerCamera(Message):
    """A steering request for a camera (`PtzCommand`, :mod:`ui.ptz`) from its detail view.

    The app sends it as this dashboard's (the commander's), first confirmed when
    `confirm` is (storing a preset), and hands the reply to `done` (None: cancelled,
    nothing sent), so the view sends its next request only then: see
    :class:`ui.ptz.Outbox`."""

    camera_id: str
    request: PtzCommand
    done: Callable[[Reply | None], None]
    confirm: bool = False
