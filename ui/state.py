"""The dashboard's model of the vehicle: what the bus last said about each thing, and when.

Plain Python, no Textual: the bridge writes it as messages arrive, widgets
read it on their refresh timer, and tests drive it directly. Each view keeps
the latest message as received plus the wall-clock time it was produced (from
the envelope header, never later than our own clock), so a value replayed
from the broker's cache by a service that has since died shows its true age
at once. All time comes from an injected clock so that tests and snapshots are
deterministic.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from edge.bus import topics
from edge.bus.messages import (
    SEVERITIES,
    Alert,
    CameraStatus,
    CameraThumbnail,
    DroneStatus,
    DroneTelemetry,
    EventMark,
    LinkStatus,
    Message,
    ServiceHealth,
    UplinkSessions,
    ViewerSession,
)
from edge.config import VehicleConfig
from ui import geo
from ui.format import OLD_S, age_of, age_text, clean, finite
from ui.keys import ACTION_NAMES

Clock = Callable[[], float]

MAX_EVENTS = 500
# A flood of invented device ids must not grow the model (and the screen) without bound.
MAX_DEVICES = 64
MAX_SESSIONS = 256
BUS_SERVICE = "bus"

CAMERA_STATES = ("live", "connecting", "down")
# How severe each severity is, for colour and for which alerts also pop up.
SEVERITY_RANK = {name: i for i, name in enumerate(SEVERITIES)}


@dataclass(slots=True)
class Thumb:
    pixels: Any  # numpy uint8 array, height x width x 3, RGB
    captured_ts: float | None
    received_ts: float
    rev: int


@dataclass(slots=True)
class CameraView:
    camera_id: str
    name: str
    configured: bool = False
    status: CameraStatus | None = None
    status_ts: float | None = None
    thumb: Thumb | None = None
    thumb_error: str = ""
    thumbs_seen: int = 0
    rev: int = 0

    def status_age(self, now: float) -> float | None:
        return age_of(self.status_ts, now)

    def frame_age(self, now: float) -> float | None:
        """Age of the last frame now: as reported, plus the time since the report."""
        s = self.status
        reported = None if s is None else finite(s.last_frame_age_s)
        if reported is None:
            return None
        return max(0.0, reported) + (self.status_age(now) or 0.0)

    def condition(self, now: float) -> tuple[str, str]:
        """(state, reason): live | connecting | down | silent (no status lately) | unknown."""
        s = self.status
        if s is None:
            return "unknown", "no data"
        age = self.status_age(now)
        if age is not None and age > OLD_S:
            return "silent", f"no status for {age_text(age)}"
        state = clean(s.state, 16).lower()
        if state not in CAMERA_STATES:
            return "unknown", f"state {state!r}"
        return state, clean(s.reason, 200)


@dataclass(slots=True)
class CommandResult:
    action: str
    status: str  # sent | accepted | rejected | timeout | busy | error
    detail: str
    elapsed_ms: float | None
    ts: float


@dataclass(slots=True)
class DroneView:
    drone_id: str
    link: str = ""
    link_name: str = ""
    placeholder: bool = False  # a configured link with no drone heard on it yet
    status: DroneStatus | None = None
    status_ts: float | None = None
    telemetry: DroneTelemetry | None = None
    telemetry_ts: float | None = None
    last_command: CommandResult | None = None
    rev: int = 0

    @property
    def sysid(self) -> int | None:
        for m in (self.status, self.telemetry):
            if m is not None and isinstance(m.sysid, int) and 0 < m.sysid < 256:
                return m.sysid
        _, _, tail = self.drone_id.rpartition("-")
        return int(tail) if tail.isdigit() and 0 < int(tail) < 256 else None

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

    def condition(self, now: float) -> str:
        """live | connecting | lost | silent (the service said nothing lately) | unknown."""
        if self.status is None and self.telemetry is None:
            return "unknown"
        ages = [a for a in (self.status_age(now), self.telemetry_age(now)) if a is not None]
        if ages and min(ages) > OLD_S:
            return "silent"
        if self.status is None:
            return "live"
        state = clean(self.status.state, 16).lower()
        return state if state in ("live", "connecting", "lost") else "unknown"

    def position(self) -> tuple[float, float] | None:
        t = self.telemetry
        return None if t is None else geo.valid(t.lat, t.lon)


@dataclass(slots=True)
class LinkView:
    link_id: str
    name: str
    kind: str = ""
    configured: bool = False
    capacity_kbps: int = 0
    status: LinkStatus | None = None
    status_ts: float | None = None
    rev: int = 0


@dataclass(slots=True)
class ServiceView:
    name: str
    health: ServiceHealth
    ts: float


@dataclass(slots=True, frozen=True)
class Event:
    seq: int
    ts: float
    severity: str
    source: str
    text: str
    kind: str  # alert | mark | local


@dataclass(slots=True)
class BusView:
    # Our clock, when a new heartbeat of the broker's last arrived (the bridge decides
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

    kind: str  # camera | thumbnail | drone | link | uplink | service | event | heartbeat
    key: str
    new: bool = False


class DashboardState:
    def __init__(self, config: VehicleConfig | None = None, clock: Clock | None = None) -> None:
        self.clock: Clock = clock or time.time
        self.vehicle = config.vehicle if config else ""
        pos = config.position if config else None
        self.position: tuple[float, float] | None = (
            geo.valid(pos.lat, pos.lon) if pos is not None else None)
        self.cameras: dict[str, CameraView] = {}
        self.drones: dict[str, DroneView] = {}
        self.links: dict[str, LinkView] = {}
        self.services: dict[str, ServiceView] = {}
        self.sessions: list[ViewerSession] = []
        self.sessions_ts: float | None = None
        self.sessions_rev = 0
        self.events: deque[Event] = deque(maxlen=MAX_EVENTS)
        self.events_rev = 0
        self.bus = BusView()
        # Bumped when a device is added or removed, so grids know to rebuild.
        self.layout_rev = 0
        self._event_seq = itertools.count(1)
        self._link_order: dict[str, int] = {}
        self._link_names: dict[str, str] = {}
        if config is not None:
            for cam in config.cameras:
                self.cameras[cam.id] = CameraView(cam.id, cam.name, configured=True)
            for i, d in enumerate(config.drones):
                self._link_order[d.id] = i
                self._link_names[d.id] = d.name
                self.drones[d.id] = DroneView(d.id, link=d.id, link_name=d.name,
                                              placeholder=True)
            for link in config.links:
                self.links[link.id] = LinkView(link.id, link.name, kind=link.kind,
                                               configured=True,
                                               capacity_kbps=link.capacity_kbps)

    # -- reading --------------------------------------------------------------
    def now(self) -> float:
        return self.clock()

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
        return age_of(self.bus.heartbeat_at, now)

    # -- writing ----------------------------------------------------------------
    def apply(self, topic: str, message: Message | None, ts_ns: int = 0) -> Update | None:
        """Take one bus message into the model; what changed, or None if nothing."""
        now = self.clock()
        ts = now if ts_ns <= 0 else min(now, ts_ns / 1e9)
        self.bus.received += 1
        if isinstance(message, ServiceHealth):
            return self._health(topic, message, ts, now)
        if isinstance(message, CameraStatus):
            return self._camera(topic, message, ts)
        if isinstance(message, CameraThumbnail):
            return self._thumbnail_meta(topic, message)
        if isinstance(message, DroneTelemetry | DroneStatus):
            return self._drone(topic, message, ts)
        if isinstance(message, LinkStatus):
            return self._link(topic, message, ts)
        if isinstance(message, UplinkSessions):
            self.sessions = list(message.sessions[:MAX_SESSIONS])
            self.sessions_ts = ts
            self.sessions_rev += 1
            return Update("uplink", "")
        if isinstance(message, Alert):
            source = clean(message.source, 60) or _tail(topic)
            severity = clean(message.severity, 12).lower() or "info"
            ev = self.add_event(severity, source, clean(message.text), ts=ts, kind="alert")
            return Update("event", str(ev.seq))
        if isinstance(message, EventMark):
            author = clean(message.author, 40)
            ev = self.add_event("mark", author or "mark", clean(message.note), ts=ts, kind="mark")
            return Update("event", str(ev.seq))
        return None

    def _odd(self) -> None:
        self.bus.odd += 1

    def _health(self, topic: str, msg: ServiceHealth, ts: float, now: float) -> Update | None:
        name = _key(topic) or clean(msg.service, 64)
        if not name:
            self._odd()
            return None
        if name not in self.services and len(self.services) >= MAX_DEVICES * 4:
            self._odd()
            return None
        self.services[name] = ServiceView(name, msg, ts)
        return Update("heartbeat" if name == BUS_SERVICE else "service", name)

    def _camera(self, topic: str, msg: CameraStatus, ts: float) -> Update | None:
        cam_id = _key(topic) or clean(msg.camera_id, 64)
        view, new = self._camera_view(cam_id)
        if view is None:
            return None
        if not view.configured and msg.name:
            view.name = clean(msg.name, 64)
        view.status, view.status_ts = msg, ts
        view.rev += 1
        return Update("camera", cam_id, new)

    def _thumbnail_meta(self, topic: str, msg: CameraThumbnail) -> Update | None:
        cam_id = _key(topic) or clean(msg.camera_id, 64)
        view, new = self._camera_view(cam_id)
        if view is None:
            return None
        view.thumbs_seen += 1
        return Update("thumbnail", cam_id, new)

    def _camera_view(self, cam_id: str) -> tuple[CameraView | None, bool]:
        if not cam_id:
            self._odd()
            return None, False
        view = self.cameras.get(cam_id)
        if view is not None:
            return view, False
        if len(self.cameras) >= MAX_DEVICES:
            self._odd()
            return None, False
        view = self.cameras[cam_id] = CameraView(cam_id, cam_id)
        self.layout_rev += 1
        return view, True

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

    def _drone(self, topic: str, msg: DroneTelemetry | DroneStatus, ts: float) -> Update | None:
        drone_id = _key(topic) or clean(msg.drone_id, 64)
        if not drone_id:
            self._odd()
            return None
        view = self.drones.get(drone_id)
        new = view is None or view.placeholder
        if view is None:
            if sum(not d.placeholder for d in self.drones.values()) >= MAX_DEVICES:
                self._odd()
                return None
            view = self.drones[drone_id] = DroneView(drone_id)
            self.layout_rev += 1
        view.placeholder = False
        if isinstance(msg, DroneStatus):
            view.status, view.status_ts = msg, ts
            if msg.link:
                view.link = clean(msg.link, 64)
        else:
            view.telemetry, view.telemetry_ts = msg, ts
        if not view.link:
            head, _, tail = drone_id.rpartition("-")
            view.link = head if head and tail.isdigit() else drone_id
        # A link's placeholder row goes once a real drone speaks for it.
        placeholder = self.drones.get(view.link)
        if placeholder is not None and placeholder is not view and placeholder.placeholder:
            del self.drones[view.link]
            self.layout_rev += 1
        if not view.link_name:
            view.link_name = self._link_names.get(view.link, "")
        view.rev += 1
        return Update("drone", drone_id, new)

    def _link(self, topic: str, msg: LinkStatus, ts: float) -> Update | None:
        link_id = _key(topic) or clean(msg.link_id, 64)
        if not link_id:
            self._odd()
            return None
        view = self.links.get(link_id)
        new = view is None
        if view is None:
            if len(self.links) >= MAX_DEVICES:
                self._odd()
                return None
            view = self.links[link_id] = LinkView(link_id, clean(msg.name, 64) or link_id,
                                                  kind=clean(msg.kind, 20))
            self.layout_rev += 1
        view.status, view.status_ts = msg, ts
        view.rev += 1
        return Update("link", link_id, new)

    def add_event(self, severity: str, source: str, text: str, ts: float | None = None,
                  kind: str = "local") -> Event:
        ev = Event(next(self._event_seq), self.clock() if ts is None else ts, severity,
                   clean(source, 60), clean(text), kind)
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

    def note_command(self, drone_id: str, result: CommandResult) -> None:
        view = self.drones.get(drone_id)
        if view is not None:
            view.last_command = result
            view.rev += 1
        if result.status == "sent":
            return
        severity = {"accepted": "notice", "rejected": "warning", "busy": "warning"}.get(
            result.status, "error")
        ms = f" in {result.elapsed_ms:.0f} ms" if result.elapsed_ms is not None else ""
        detail = f": {result.detail}" if result.detail else ""
        action = ACTION_NAMES.get(result.action, result.action)
        self.add_event(severity, drone_id, f"{action} {result.status}{ms}{detail}")


def _key(topic: str) -> str:
    """The device part of `family/device/leaf`, or '' when the topic has no such part."""
    parts = topic.split(topics.SEP)
    return clean(parts[1], 64) if len(parts) >= 3 else ""


def _tail(topic: str) -> str:
    return clean(topic.partition(topics.SEP)[2], 60)
