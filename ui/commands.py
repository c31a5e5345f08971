"""Commands the commander sends: confirm → request → reply, one flow for every kind.

A :class:`Command` says whom to ask (a bus service), what to send (a bus
message) and how to word it (the confirmation, the log line, the
notification); :class:`CommandFlow` runs any of them the same way: ask for
confirmation (nothing goes out without it), send, wait for the reply (the bus
always gives one: an answer, a timeout or an error), record the outcome on the
device's row and in the event log, and notify. Drone commands are built here
(:func:`drone_command`); camera PTZ and replay controls are meant to build
their own :class:`Command` and reuse the flow.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from textual.app import App
from textual.notifications import SeverityLevel

from edge.bus import topics
from edge.bus.messages import (
    REPLY_STATUSES,
    DroneCommand,
    LinkCommand,
    Message,
    PushCommand,
    RecordCommand,
    Reply,
)
from edge.bus.mirror import known
from ui import geo
from ui.bridge import BusBridge
from ui.dialogs import ConfirmDialog, GotoTarget
from ui.format import clean, distance_text, finite
from ui.keys import ACTION_NAMES, ACTION_SHORT
from ui.severity import REPLY_SEVERITY, notify_level
from ui.state import CommandResult, CommandStatus, DashboardState, DroneView

DETAIL_MAX = 200


@dataclass(frozen=True, slots=True)
class Command:
    """One request the commander confirms before it goes out."""

    service: str  # who answers it: the bus name of a service (`drone@alpha`)
    request: Message  # what is sent
    subject: str  # the device it is about: its row shows the outcome, the log names it
    label: str  # its short name, for a pane and the confirm button: "RTL"
    name: str  # its name in words, for the log and notifications: "return to launch"
    title: str  # the confirmation's title
    body: str  # the confirmation's text: what will happen, to what
    kind: str = "command"  # the notification's title: "drone command"


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a command cannot even be asked for, in words for the commander."""

    text: str
    severity: SeverityLevel


class CommandFlow:
    """Confirm, send, show the answer. Runs in a worker (the dialog is awaited)."""

    def __init__(self, app: App[Any], state: DashboardState, bridge: BusBridge | None) -> None:
        self.app = app
        self.state = state
        self.bridge = bridge

    async def run(self, command: Command) -> Reply | None:
        """The reply, or None if the commander cancelled (then nothing was sent)."""
        if not await self.app.push_screen_wait(ConfirmDialog(
                command.title, command.body, f"{command.label} {command.subject}")):
            self.app.notify(f"{command.name} for {command.subject} cancelled; nothing sent.",
                            timeout=3)
            return None
        self._note(command, "sent", "", None)
        if self.bridge is None:
            reply = Reply(status="error", detail="no bus")
            elapsed = None
        else:
            reply = await self.bridge.request(command.service, command.request)
            elapsed = finite(reply.elapsed_ms)
        status = known(reply.status, REPLY_STATUSES)
        detail = str(reply.detail)[:DETAIL_MAX]
        if status is None:  # a word this dashboard does not know: shown, as an error
            status, detail = "error", f"answered {str(reply.status)[:20]!r}: {detail}"
        self._note(command, status, detail, elapsed)
        text = f"{command.subject} {command.name}: {status}" + (f": {detail}" if detail else "")
        self.app.notify(text, title=command.kind, severity=notify_level(REPLY_SEVERITY[status]),
                        timeout=8)
        return reply

    def _note(self, command: Command, status: CommandStatus, detail: str,
              elapsed: float | None) -> None:
        self.state.note_command(command.subject, CommandResult(
            command.label, command.name, status, detail, elapsed, self.state.now()))


# -- drones ------------------------------------------------------------------------------
def commandable(state: DashboardState, drone_id: str) -> tuple[DroneView, int] | Refusal:
    """The drone and its system id, if a command can be addressed to it."""
    d = state.drones.get(drone_id)
    if d is None or d.placeholder:
        return Refusal("No drone there yet: nothing to command.", "warning")
    sysid = d.sysid
    if sysid is None or not d.link:
        return Refusal(f"{drone_id}: its link or system id is unknown; cannot command it.",
                       "error")
    return d, sysid


def drone_command(state: DashboardState, d: DroneView, sysid: int, action: str,
                  target: GotoTarget | None = None) -> Command:
    """`action` (`rtl`, `hold`, `land`; `goto` with its `target`) for drone `d`."""
    request = DroneCommand(sysid=sysid, action=action)
    name = ACTION_NAMES.get(action, action)
    where = ""
    if target is not None:
        request.lat, request.lon, request.alt_m = target.lat, target.lon, target.alt_m
        dist = (geo.haversine_m(state.position, (target.lat, target.lon))
                if state.position else None)
        where = (f"\nto {target.lat:.6f}, {target.lon:.6f} at {target.alt_m:.0f} m above "
                 f"home ({distance_text(dist)} from the vehicle)")
    link_name = f"{d.link_name}, " if d.link_name else ""
    return Command(
        service=topics.drone_service(d.link), request=request, subject=d.drone_id,
        label=ACTION_SHORT.get(action, action), name=name,
        title=f"{name[:1].upper()}{name[1:]}: drone {d.drone_id}?",
        body=(f"Drone {d.drone_id} ({link_name}link {d.link}, system {sysid})\n"
              f"will {name.upper()}{where}."),
        kind="drone command")


# -- recording ---------------------------------------------------------------------------
def record_command(state: DashboardState) -> Command | Refusal:
    """Start a named session (named by the time) or stop the open one, as the recorder says."""
    heard = state.mirror.recorder
    if heard is None:
        return Refusal("No recorder heard on the bus: nothing to start or stop.", "warning")
    status = heard.message
    if status.session_id is not None:
        name = status.session_name or f"session {status.session_id}"
        return Command(
            service=topics.RECORDER_SERVICE, request=RecordCommand(action="stop"),
            subject="recorder", label="Stop", name=f"stop recording session {name!r}",
            title="Stop the recording session?",
            body=(f"Session {name!r} ends now. Its recordings stay protected from pruning "
                  "until it is released (edge record release)."),
            kind="recording")
    name = f"Session {time.strftime('%Y-%m-%d %H:%M', time.localtime(state.now()))}"
    return Command(
        service=topics.RECORDER_SERVICE, request=RecordCommand(action="start", name=name),
        subject="recorder", label="Start", name=f"start recording session {name!r}",
        title="Start a recording session?",
        body=(f"Session {name!r} begins now: what is recorded from now on is kept until it "
              "is released, and marks (m) land in it."),
        kind="recording")


# -- WAN links ---------------------------------------------------------------------------
def link_command(state: DashboardState, link_id: str, action: str) -> Command | Refusal:
    """`force` the tunnel onto link `link_id`, or `release` a force (whichever link has it)."""
    view = state.links.get(link_id)
    if view is None:
        return Refusal("No link there: nothing to force.", "warning")
    if action == "release":
        forced = next((v for v in state.links.values()
                       if v.status is not None and v.status.forced), None)
        if forced is None:
            return Refusal("No link is forced: the policy chooses already.", "information")
        return Command(
            service=topics.LINKS_SERVICE, request=LinkCommand(action="release"),
            subject=forced.link_id, label="Release", name="release the forced link",
            title=f"Release the force on {forced.name}?",
            body=("The links service chooses again which link carries the tunnel to the "
                  "centre (its preference order and failback rules)."),
            kind="link command")
    s = view.status
    if s is not None and s.state == "down":
        why = f"\n{view.name} is DOWN now: the centre's video and data stop while it is."
    else:
        why = ""
    return Command(
        service=topics.LINKS_SERVICE, request=LinkCommand(action="force", link_id=link_id),
        subject=link_id, label="Force", name=f"force the tunnel onto {view.name}",
        title=f"Carry the tunnel over {view.name}?",
        body=(f"Everything sent to the city centre goes over {view.name} ({link_id}) until "
              f"the force is released (a on the links pane), whatever the policy says.{why}"),
        kind="link command")


# -- pushing a camera to the centre ------------------------------------------------------
PUSHING = ("connecting", "live", "retrying")


def push_command(state: DashboardState, camera_id: str) -> Command | Refusal:
    """Push camera `camera_id` up to the centre's WHIP server, or stop pushing it."""
    view = state.cameras.get(camera_id)
    if view is None:
        return Refusal("No camera there: nothing to push.", "warning")
    if state.push is None:
        return Refusal("The uplink has not said it can push (no [uplink.push] in the "
                       "vehicle's config, or the uplink is not running).", "warning")
    name = view.name or camera_id
    server = clean(state.push.whip_url, 120) or "the centre's WHIP server"
    feed = state.push_feed(camera_id)
    if feed is not None and feed.state in PUSHING:
        return Command(
            service=topics.UPLINK_SERVICE,
            request=PushCommand(action="stop", camera_id=camera_id), subject=camera_id,
            label="Stop push", name=f"stop pushing {name} to the centre",
            title=f"Stop pushing {name}?",
            body=(f"{name} ({camera_id}) is no longer sent up to {server}: the centre's "
                  "viewers of this feed lose it. Viewers that pull it over WHEP keep it."),
            kind="push")
    return Command(
        service=topics.UPLINK_SERVICE, request=PushCommand(action="start", camera_id=camera_id),
        subject=camera_id, label="Push", name=f"push {name} to the centre",
        title=f"Push {name} up to the centre?",
        body=(f"{name} ({camera_id}) is sent up to {server} once, for the centre's media "
              "server to fan out: it uses the link to the centre for as long as it is "
              "pushed (the sub stream over a satellite), and is retried if it fails."),
        kind="push")
