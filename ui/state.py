"""The dashboard's model of the vehicle: what the bus last said about each thing, and when.

Plain Python, no Textual: the bridge writes it as messages arrive, widgets
read it on their refresh timer, and tests drive it directly. What the bus says
about the devices is kept by :class:`~edge.bus.mirror.Mirror` (the latest
message of each, when it was produced, the staleness rule, the bounds); the
views here add what only the dashboard needs: names from the config, decoded
thumbnails, placeholders, the last command, revision counters for redrawing,
and the event log. All time comes from an injected clock so
that tests and snapshots are deterministic.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Literal

from edge.bus import topics
from edge.bus.envelope import Envelope
from edge.bus.messages import (
    REPLY_STATUSES,
    Alert,
    CameraStatus,
    CameraThumbnail,
    CommandEvent,
    DroneStatus,
    DroneTelemetry,
    EventMark,
    GbDeviceStatus,
    LinkStatus,
    Message,
    PtzStatus,
    PushFeed,
    ReplayStatus,
    ReplyStatus,
    ServiceHealth,
    UplinkPushStatus,
    ViewerSession,
)
from edge.bus.mirror import (
    MAX_DEVICES,
    MAX_ID_CHARS,
    CameraCondition,
    CameraRecord,
    Change,
    Clock,
    DroneCondition,
    DroneRecord,
    Heard,
    Latest,
    LinkRecord,
    Mirror,
    Stamp,
    age_of,
    is_news,
    known,
    ts_of,
)
from edge.bus.replay_clock import ReplayTime
from edge.config import VehicleConfig
from edge.config.camera_append import gb_channel_cameras
from ui import geo
from ui.format import age_text, clean, finite
from ui.severity import EVENT_SEVERITIES, REPLY_SEVERITY, EventSeverity

MAX_EVENTS = 500
MAX_GB_CHANNELS = 64  # of one GB/T 28181 device (an NVR's catalog may list many)
# alert, mark and command: heard on the bus; local: this dashboard's own.
EventKind = Literal["alert", "mark", "command", "local"]

# A command's outcome: sent (no answer yet), then the reply's status.
CommandStatus = Literal["sent"] | ReplyStatus


@dataclass(slots=True)
class Thumb:
    pixels: Any  # numpy uint8 array, height x width x 3, RGB
    captured_ts: float | None
    received_ts: float
    rev: int


@dataclass(slots=True)
class CameraView:
    record: CameraRecord
    name: str
    configured: bool = False
    thumb: Thumb | None = None
    thumb_error: str = ""
    thumbs_seen: int = 0
    rev: int = 0

    status = Latest[CameraStatus]("status")
    status_ts = Stamp("status")

    @property
    def camera_id(self) -> str:
        return self.record.id

    def status_age(self, now: float) -> float | None:
        return age_of(self.status_ts, now)

    def frame_age(self, now: float) -> float | None:
        """Age of the last frame now: as reported, plus the time since the report."""
        s = self.status
        reported = None if s is None else finite(s.last_frame_age_s)
        if reported is None:
            return None
        return max(0.0, reported) + (self.status_age(now) or 0.0)

    def condition(self, now: float) -> tuple[CameraCondition, str]:
        """(state, reason): live | connecting | standby | down | silent (no status lately) |
        unknown."""
        state = self.record.condition(now)
        s = self.status
        if s is None:
            return state, "no data"
        if state == "silent":
            return state, f"no status for {age_text(self.status_age(now))}"
        if state == "unknown":
            return state, f"state {clean(s.state, 16).lower()!r}"
        return state, clean(s.reason, 200)


@dataclass(slots=True)
class CommandResult:
    label: str  # the command's short name, for a pane: "RTL"
    name: str  # its name in words, for the log: "return to launch"
    status: CommandStatus
    detail: str
    elapsed_ms: float | None
    ts: float


@dataclass(slots=True)
class DroneView:
    drone_id: str
    link: str = ""
    link_name: str = ""
    # None: a configured link's placeholder, no drone heard on it yet.
    record: DroneRecord | None = None
    last_command: CommandResult | None = None
    rev: int = 0

    @property
    def placeholder(self) -> bool:
        return self.record is None

    status = Latest[DroneStatus]("status")
    status_ts = Stamp("status")
    telemetry = Latest[DroneTelemetry]("telemetry")
    telemetry_ts = Stamp("telemetry")

    @property
    def sysid(self) -> int | None:
        for m in (self.status, self.telemetry):
            if m is not None and isinstance(m.sysid, int) and m.sysid in topics.SYSIDS:
                return m.sysid
        parsed = topics.parse_drone_id(self.drone_id)
        return None if parsed is None else parsed[1]

    def status_age(self, now: float) -> float | None:
        return age_of(self.status_ts, now)

    def telemetry_age(self, now: float) -> float | None:
        return age_of(self.telemetry_ts, now)

    def message_age(self, now: float) -> float | None:
        """Age of the last MAVLink message from the drone, as best we know it."""
        s = self.status
        reported = None if s is None else finite(s.last_message_age_s)
        if reported is not None:
            return max(0.0, reported) + (self.status_age(now) or 0.0)
        return self.telemetry_age(now)

    def condition(self, now: float) -> DroneCondition:
        """live | connecting | lost | silent (the service said nothing lately) | unknown."""
        return "unknown" if self.record is None else self.record.condition(now)

    def position(self) -> tuple[float, float] | None:
        t = self.telemetry
        return None if t is None else geo.valid(t.lat, t.lon)


@dataclass(slots=True)
class LinkView:
    record: LinkRecord
    name: str
    kind: str = ""
    configured: bool = False
    capacity_kbps: int = 0
    rev: int = 0

    status = Latest[LinkStatus]("status")
    status_ts = Stamp("status")

    @property
    def link_id(self) -> str:
        return self.record.id


@dataclass(slots=True, frozen=True)
class Event:
    seq: int
    ts: float
    severity: EventSeverity
    source: str
    text: str
    kind: EventKind


@dataclass(slots=True)
class BusView:
    # Our wall clock, when a new heartbeat of the broker's last arrived (the bridge decides
    # what is new: not a replay, not one produced too long ago).
    heartbeat_at: float | None = None
    connected: bool | None = None  # None until the first heartbeat or timeout
    changed_at: float | None = None
    reconnects: int = 0
    received: int = 0
    odd: int = 0  # messages we could not place (no id, too many devices, ...)


@dataclass(slots=True, frozen=True)
class Update:
    """What one message changed; the bridge turns these into Textual messages."""

    kind: Literal["camera", "thumbnail", "drone", "link", "uplink", "service", "event",
                  "heartbeat", "recorder", "replay", "gb"]
    key: str
    new: bool = False


class DashboardState:
    def __init__(self, config: VehicleConfig | None = None, clock: Clock | None = None) -> None:
        # Ages are read on the replay's clock in a replay (ui/replay.py): the wall clock
        # until a replay status is heard.
        self.replay = ReplayTime(clock or time.time)
        self.clock: Clock = self.replay
        self.vehicle = config.vehicle if config else ""
        # Whether the vehicle should be recording: silence from the recorder is news then.
        self.recorder_expected = config.recorder.enabled if config else False
        pos = config.position if config else None
        self.position: tuple[float, float] | None = (
            geo.valid(pos.lat, pos.lon) if pos is not None else None)
        self.mirror = Mirror(cameras=[c.id for c in config.cameras] if config else (),
                             links=[link.id for link in config.links] if config else (),
                             clock=self.clock)
        self.cameras: dict[str, CameraView] = {}
        self.drones: dict[str, DroneView] = {}
        self.links: dict[str, LinkView] = {}
        self.sessions_rev = 0
        # The feeds the uplink pushes to the centre's WHIP server (`uplink/push/status`);
        # None until heard (no [uplink.push], or no uplink running).
        self.push: UplinkPushStatus | None = None
        self.push_ts: float | None = None
        # Who steers each camera (`cam/<id>/control`), by camera id: kept apart from the
        # camera's view, as it may be heard before the camera's first status.
        self.controls: dict[str, Heard[PtzStatus]] = {}
        # The GB/T 28181 devices the gb28181 service reports (`gb/<id>/status`), and which
        # of their channels are cameras: by the config's sources, and those adopted since.
        self.gb_devices: dict[str, Heard[GbDeviceStatus]] = {}
        self.gb_expected = config.gb28181.enabled if config else False
        self.gb_cameras: dict[tuple[str, str], str] = (
            gb_channel_cameras(config) if config else {})
        self.gb_rev = 0
        self.events: deque[Event] = deque(maxlen=MAX_EVENTS)
        self.events_rev = 0
        self.bus = BusView()
        # Our own bus source (the bridge sets it): the commands we sent are logged as we
        # get their replies, so their `CommandEvent`s are not logged a second time.
        self.own_source = ""
        # Bumped when a device is added or removed, so grids know to rebuild.
        self.layout_rev = 0
        self._event_seq = itertools.count(1)
        self._link_order: dict[str, int] = {}
        self._link_names: dict[str, str] = {}
        if config is not None:
            for cam in config.cameras:
                self.cameras[cam.id] = CameraView(self.mirror.cameras[cam.id], cam.name,
                                                  configured=True)
            for i, d in enumerate(config.drones):
                self._link_order[d.id] = i
                self._link_names[d.id] = d.name
                self.drones[d.id] = DroneView(d.id, link=d.id, link_name=d.name)
            for link in config.links:
                self.links[link.id] = LinkView(self.mirror.links[link.id], link.name,
                                               kind=link.kind, configured=True,
                                               capacity_kbps=link.capacity_kbps)

    # -- reading --------------------------------------------------------------
    def now(self) -> float:
        return self.clock()

    def wall_now(self) -> float:
        """The wall clock, whatever is replayed: what the bus's own liveness is judged by."""
        return self.replay.wall()

    @property
    def services(self) -> dict[str, Heard[ServiceHealth]]:
        return self.mirror.services

    @property
    def sessions(self) -> list[ViewerSession]:
        heard = self.mirror.sessions
        return [] if heard is None else heard.message.sessions

    @property
    def sessions_ts(self) -> float | None:
        return ts_of(self.mirror.sessions)

    def push_feed(self, camera_id: str) -> PushFeed | None:
        """The push of `camera_id` as the uplink last said, if it pushes or pushed it."""
        if self.push is None:
            return None
        return next((f for f in self.push.feeds if f.camera_id == camera_id), None)

    def drone_list(self) -> list[DroneView]:
        """Configured links first, in config order, each link's drones by id."""
        return sorted(self.drones.values(),
                      key=lambda d: (self._link_order.get(d.link, len(self._link_order)),
                                     d.link, d.drone_id))

    def distance_m(self, drone: DroneView) -> float | None:
        here, there = self.position, drone.position()
        if here is None or there is None:
            return None
        return geo.haversine_m(here, there)

    def bus_age(self, now: float) -> float | None:
        """Since the broker's last heartbeat; `now` on the wall clock (:meth:`wall_now`)."""
        return age_of(self.bus.heartbeat_at, now)

    # -- writing ----------------------------------------------------------------
    def take(self, env: Envelope) -> Update | None:
        """Take one received envelope into the model (a replay changes nothing)."""
        if not is_news(env) or env.message is None:
            return None
        return self.apply(env.topic, env.message, env.header.ts_ns, env.blobs)

    def take_replay(self, status: ReplayStatus) -> None:
        """A replay status (from the bus, or a control's reply). After a seek the events
        from the new position on are forgotten: the replay brings them again as it passes
        them, and a log that kept them would show them twice."""
        seeks = self.replay.status.seeks if self.replay.status is not None else status.seeks
        self.replay.take(status)
        if status.seeks != seeks:
            position = status.position_ns / 1e9
            kept = [e for e in self.events if e.ts < position]
            if len(kept) != len(self.events):
                self.events = deque(kept, maxlen=MAX_EVENTS)
                self.events_rev += 1

    def apply(self, topic: str, message: Message | None, ts_ns: int = 0,
              blobs: list[bytes] | None = None) -> Update | None:
        """Take one bus message into the model; what changed, or None if nothing."""
        self.bus.received += 1
        if message is None:
            return None
        if isinstance(message, ReplayStatus):
            self.take_replay(message)
            return Update("replay", "")
        if isinstance(message, UplinkPushStatus):
            self.push = message
            now = self.clock()
            self.push_ts = now if ts_ns <= 0 else min(now, ts_ns / 1e9)
            return Update("uplink", "")
        if isinstance(message, PtzStatus):
            return self._control(topic, message, ts_ns)
        if isinstance(message, GbDeviceStatus):
            return self._gb_device(topic, message, ts_ns)
        if isinstance(message, Alert | EventMark | CommandEvent):
            if isinstance(message, CommandEvent) and message.by == self.own_source:
                return None
            now = self.clock()
            return self._event(topic, message, now if ts_ns <= 0 else min(now, ts_ns / 1e9))
        odd = self.mirror.odd
        change = self.mirror.apply(topic, message, ts_ns, blobs or ())
        self.bus.odd += self.mirror.odd - odd
        return None if change is None else self._view(change)

    def _view(self, change: Change) -> Update | None:
        msg, key = change.heard.message, change.key
        if change.kind == "service":
            return Update("heartbeat" if key == topics.BUS_SERVICE else "service", key)
        if change.kind == "sessions":
            self.sessions_rev += 1
            return Update("uplink", "")
        if change.kind == "recorder":
            return Update("recorder", "")
        if change.kind == "camera" and isinstance(msg, CameraStatus | CameraThumbnail):
            return self._camera(key, msg)
        if change.kind == "drone" and isinstance(msg, DroneStatus | DroneTelemetry):
            return self._drone(key, msg)
        if change.kind == "link" and isinstance(msg, LinkStatus):
            return self._link(key, msg)
        return None  # what the dashboard does not show (stream announcements, drone video)

    def _event(self, topic: str, msg: Alert | EventMark | CommandEvent, ts: float) -> Update:
        if isinstance(msg, Alert):
            source = clean(msg.source, 60) or clean(topic.partition(topics.SEP)[2], 60)
            ev = self.add_event(msg.severity, source, clean(msg.text), ts=ts, kind="alert")
        elif isinstance(msg, CommandEvent):
            status = known(msg.status, REPLY_STATUSES) or "error"
            detail = f": {clean(msg.detail)}" if msg.detail else ""
            ev = self.add_event(REPLY_SEVERITY[status], clean(msg.subject, 60) or "command",
                                f"{clean(msg.action, 40)} {status} (by {clean(msg.by, 40)})"
                                f"{detail}", ts=ts, kind="command")
        else:
            author = clean(msg.author, 40)
            ev = self.add_event("mark", author or "mark", clean(msg.note), ts=ts, kind="mark")
        return Update("event", str(ev.seq))

    def _camera(self, cam_id: str, msg: CameraStatus | CameraThumbnail) -> Update:
        view = self.cameras.get(cam_id)
        new = view is None
        if view is None:
            view = self.cameras[cam_id] = CameraView(self.mirror.cameras[cam_id], cam_id)
            self.layout_rev += 1
        if isinstance(msg, CameraThumbnail):
            view.thumbs_seen += 1
            return Update("thumbnail", cam_id, new)
        if not view.configured and msg.name:
            view.name = clean(msg.name, 64)
        view.rev += 1
        return Update("camera", cam_id, new)

    def _control(self, topic: str, msg: PtzStatus, ts_ns: int) -> Update | None:
        parts = topic.split(topics.SEP)
        cam_id = parts[1] if len(parts) >= 3 and parts[1] else msg.camera_id
        if (not cam_id or len(cam_id) > MAX_ID_CHARS or not cam_id.isprintable()
                or cam_id not in self.controls and len(self.controls) >= MAX_DEVICES):
            self.bus.odd += 1
            return None
        now = self.clock()
        self.controls[cam_id] = Heard(msg, now if ts_ns <= 0 else min(now, ts_ns / 1e9))
        view = self.cameras.get(cam_id)
        if view is None:
            return None
        view.rev += 1
        return Update("camera", cam_id)

    def control(self, cam_id: str) -> PtzStatus | None:
        """Who steers camera `cam_id`, as its service last said (None: not heard)."""
        heard = self.controls.get(cam_id)
        return None if heard is None else heard.message

    def _gb_device(self, topic: str, msg: GbDeviceStatus, ts_ns: int) -> Update | None:
        parts = topic.split(topics.SEP)
        device_id = parts[1] if len(parts) >= 3 and parts[1] else msg.device_id
        if (not device_id or len(device_id) > MAX_ID_CHARS or not device_id.isprintable()
                or device_id not in self.gb_devices and len(self.gb_devices) >= MAX_DEVICES):
            self.bus.odd += 1
            return None
        del msg.channels[MAX_GB_CHANNELS:]
        new = device_id not in self.gb_devices
        now = self.clock()
        self.gb_devices[device_id] = Heard(msg, now if ts_ns <= 0 else min(now, ts_ns / 1e9))
        self.gb_rev += 1
        return Update("gb", device_id, new)

    def gb_adopted(self, device_id: str, channel_id: str, camera_id: str) -> None:
        """The gb28181 service made the channel camera `camera_id` (our config predates it)."""
        self.gb_cameras[(device_id, channel_id)] = camera_id
        self.gb_rev += 1

    def set_thumbnail(self, cam_id: str, pixels: Any, captured_ns: int) -> None:
        view = self.cameras.get(cam_id)
        if view is None:
            return
        now = self.clock()
        captured = captured_ns / 1e9 if isinstance(captured_ns, int) and captured_ns > 0 else None
        rev = view.thumb.rev + 1 if view.thumb else 1
        view.thumb = Thumb(pixels, captured, now, rev)
        view.thumb_error = ""
        view.rev += 1

    def thumbnail_failed(self, cam_id: str, reason: str) -> None:
        view = self.cameras.get(cam_id)
        if view is not None and view.thumb_error != reason:
            view.thumb_error = reason
            view.rev += 1

    def _drone(self, drone_id: str, msg: DroneTelemetry | DroneStatus) -> Update:
        view = self.drones.get(drone_id)
        new = view is None or view.placeholder
        if view is None:
            view = self.drones[drone_id] = DroneView(drone_id)
            self.layout_rev += 1
        view.record = self.mirror.drones[drone_id]
        if isinstance(msg, DroneStatus) and msg.link:
            view.link = clean(msg.link, 64)
        if not view.link:
            parsed = topics.parse_drone_id(drone_id)
            view.link = drone_id if parsed is None else parsed[0]
        # A link's placeholder row goes once a real drone speaks for it.
        placeholder = self.drones.get(view.link)
        if placeholder is not None and placeholder is not view and placeholder.placeholder:
            del self.drones[view.link]
            self.layout_rev += 1
        if not view.link_name:
            view.link_name = self._link_names.get(view.link, "")
        view.rev += 1
        return Update("drone", drone_id, new)

    def _link(self, link_id: str, msg: LinkStatus) -> Update:
        view = self.links.get(link_id)
        new = view is None
        if view is None:
            view = self.links[link_id] = LinkView(self.mirror.links[link_id],
                                                  clean(msg.name, 64) or link_id,
                                                  kind=clean(msg.kind, 20))
            self.layout_rev += 1
        view.rev += 1
        return Update("link", link_id, new)

    def add_event(self, severity: str, source: str, text: str, ts: float | None = None,
                  kind: EventKind = "local") -> Event:
        """Log an event; a severity this dashboard does not know is taken as `info`."""
        ev = Event(next(self._event_seq), self.clock() if ts is None else ts,
                   known(severity, EVENT_SEVERITIES) or "info", clean(source, 60), clean(text),
                   kind)
        self.events.appendleft(ev)
        self.events_rev += 1
        return ev

    def set_bus_connected(self, connected: bool, detail: str = "") -> bool:
        """Record a change of the bus's state; False if it was already so."""
        if self.bus.connected is connected:
            return False
        was = self.bus.connected
        self.bus.connected = connected
        self.bus.changed_at = self.clock()
        if not connected:
            self.add_event("error", "dashboard", detail or "bus gone")
        elif was is False:
            self.add_event("notice", "dashboard", detail or "bus back")
        return True

    def note_command(self, subject: str, result: CommandResult) -> None:
        """A command about device `subject` was sent (`sent`) or answered."""
        view = self.drones.get(subject)
        if view is not None:
            view.last_command = result
            view.rev += 1
        if result.status == "sent":
            return
        ms = f" in {result.elapsed_ms:.0f} ms" if result.elapsed_ms is not None else ""
        detail = f": {result.detail}" if result.detail else ""
        self.add_event(REPLY_SEVERITY[result.status], subject,
                       f"{result.name} {result.status}{ms}{detail}")
