"""What the centre sees of the vehicle: cameras, drones, links and sessions, from the bus.

:class:`UplinkState` follows the bus (`cam/`, `drone/`, `link/`; the broker's
last-value cache fills it at once when the uplink starts) through a
:class:`~edge.bus.mirror.Mirror`, which keeps the latest message of each
device with when it was produced and owns the staleness rule the dashboard
uses too. It answers two kinds of reader:

- the WHEP handlers, which ask whether a camera exists, is live and where
  its streams are, and which WAN link carries the tunnel to the centre now
  (:meth:`UplinkState.active_link`, as the links service reports it) and so
  which streams may cross it;
- `/api/state` (a JSON snapshot) and `/api/events` (server-sent events of the
  same objects). An SSE reader gets a :class:`Watcher`: changes are coalesced
  by object and read at most every :data:`COALESCE_S`, so a slow reader gets
  the latest value of each object rather than a growing queue.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from edge.bus import topics
from edge.bus.client import BusClient
from edge.bus.envelope import Envelope
from edge.bus.messages import (
    CameraStatus,
    CameraStream,
    CameraThumbnail,
    DroneStatus,
    DroneTelemetry,
    LinkStatus,
    PtzStatus,
    ReplayStatus,
)
from edge.bus.mirror import (
    SILENT_S,
    CameraCondition,
    CameraRecord,
    Clock,
    DroneRecord,
    Heard,
    Latest,
    LinkRecord,
    Mirror,
    Stamp,
    is_news,
)
from edge.bus.replay_clock import ReplayTime
from edge.config import CameraConfig, VehicleConfig, WanLinkConfig

COALESCE_S = 0.2

Json = dict[str, Any]


R = TypeVar("R", CameraRecord, DroneRecord, LinkRecord)


class _View(Generic[R]):
    """What the centre sees of one device: the mirror's record of it. Values set by hand
    (tests do) count as heard now, by `clock`."""

    def __init__(self, record: R, clock: Clock = time.time) -> None:
        self.record: R = record
        self.clock = clock

    @property
    def id(self) -> str:
        return self.record.id


class CameraState(_View[CameraRecord]):
    """One camera: its record, and its config if the config names it."""

    status = Latest[CameraStatus]("status")

    def __init__(self, record: CameraRecord, name: str, config: CameraConfig | None = None,
                 clock: Clock = time.time) -> None:
        super().__init__(record, clock)
        self.name = name
        self.config = config
        # Who steers it (`cam/<id>/control`), as its camera service last said.
        self.control: PtzStatus | None = None

    @property
    def status_mono(self) -> float:
        """When the status was heard, on the monotonic clock (0.0: never)."""
        heard = self.record.status
        return 0.0 if heard is None else time.monotonic() - heard.age(self.clock())

    @status_mono.setter
    def status_mono(self, at: float) -> None:
        if self.record.status is not None:
            self.record.status.ts = self.clock() - (time.monotonic() - at)

    @property
    def streams(self) -> dict[str, CameraStream]:
        return self.record.streams

    @property
    def thumbnail(self) -> bytes | None:
        return self.record.jpeg or None

    @thumbnail.setter
    def thumbnail(self, jpeg: bytes | None) -> None:
        self.record.jpeg = jpeg or b""

    @property
    def thumbnail_ns(self) -> int:
        """When the thumbnail was taken (as the camera says, else as it was sent)."""
        heard = self.record.thumbnail
        if heard is None:
            return 0
        return heard.message.captured_ns or round(heard.ts * 1e9)

    @thumbnail_ns.setter
    def thumbnail_ns(self, ns: int) -> None:
        self.record.thumbnail = Heard(CameraThumbnail(camera_id=self.id, captured_ns=ns),
                                      self.clock())

    @property
    def drone(self) -> str | None:
        return self.config.drone if self.config else None

    @property
    def state(self) -> CameraCondition:
        return self.record.condition(self.clock())

    @property
    def reason(self) -> str:
        state = self.state
        if self.status is None:
            return "no status from the camera service yet"
        if state == "silent":
            return f"no status from the camera service for over {SILENT_S:.0f} s"
        if state == "unknown":
            return f"the camera service says {self.status.state!r}"
        return self.status.reason

    @property
    def live(self) -> bool:
        return self.state == "live"

    def to_json(self) -> Json:
        s = self.status
        pos = self.config.position if self.config else None
        return {
            "id": self.id,
            "name": self.name,
            "state": self.state,
            "reason": self.reason,
            "codec": s.codec if s else "",
            "profile": s.profile if s else "",
            "width": s.width if s else 0,
            "height": s.height if s else 0,
            "fps": s.fps if s else 0.0,
            "kbps": s.kbps if s else 0.0,
            "last_frame_age_s": s.last_frame_age_s if s else None,
            "reconnects": s.reconnects if s else 0,
            "lat": s.lat if s and s.lat is not None else (pos.lat if pos else None),
            "lon": s.lon if s and s.lon is not None else (pos.lon if pos else None),
            "drone": self.drone,
            "uplink_profile": self.config.uplink_profile if self.config else "sub",
            "streams": {p: {"codec": st.codec, "width": st.width, "height": st.height,
                            "fps": st.fps, "profile_level_id": st.profile_level_id}
                        for p, st in sorted(self.streams.items())},
            "thumbnail_ns": self.thumbnail_ns or None,
            "control": self.control_json(),
        }

    def control_json(self) -> Json | None:
        """Who steers the camera and whether the centre may (None: not heard, so the page
        offers no steering). The config has the last word on the centre's right."""
        c = self.control
        if c is None:
            return None
        allowed = bool(c.kind) and c.centre_allowed and (
            self.config is None or self.config.ptz.centre)
        return {"kind": c.kind, "reason": c.reason, "centre_allowed": allowed,
                "holder": c.holder, "holder_who": c.holder_who,
                "held_until_ns": c.held_until_ns or None, "moving": c.moving,
                "last_action": c.last_action}


class DroneState(_View[DroneRecord]):
    status = Latest[DroneStatus]("status")
    telemetry = Latest[DroneTelemetry]("telemetry")

    def to_json(self) -> Json:
        return {"id": self.id,
                "status": self.status.to_body() if self.status else None,
                "telemetry": self.telemetry.to_body() if self.telemetry else None}


class LinkState(_View[LinkRecord]):
    """One WAN link: its record (its own, if made by hand), and its config."""

    status = Latest[LinkStatus]("status")
    status_ts = Stamp("status")

    def __init__(self, id: str, config: WanLinkConfig | None = None,
                 status: LinkStatus | None = None, record: LinkRecord | None = None,
                 clock: Clock = time.time) -> None:
        super().__init__(record or LinkRecord(id), clock)
        self.config = config
        if status is not None:
            self.status = status

    @property
    def constrained(self) -> bool:
        return bool(self.config and self.config.constrained)

    @property
    def up(self) -> bool:
        # A link nobody reports on yet may well be up; only a reported "down" is down.
        return self.status is None or self.status.state in ("up", "degraded", "unknown")

    @property
    def active(self) -> bool:
        """The links service says, lately, that this WAN carries the tunnel to the centre.
        Lately is the rule every device's status is judged by (:data:`SILENT_S`): an
        older word is not believed, as a camera's ``live`` is not."""
        heard = self.record.status
        return (heard is not None and heard.message.active
                and heard.age(self.clock()) <= SILENT_S)

    @property
    def kind(self) -> str:
        c, s = self.config, self.status
        return (c.kind if c else "") or (s.kind if s else "")

    def allowed_profiles(self) -> tuple[str, ...]:
        """The stream profiles that may cross this link: its config's, else by its kind as
        the links service names it (sub only over a satellite, as the config's default)."""
        if self.config is not None:
            return self.config.allowed_profiles()
        return ("sub",) if self.kind == "satellite" else ("main", "sub")

    def allows_main(self) -> bool:
        return "main" in self.allowed_profiles()

    def capacity_bps(self) -> float | None:
        """What may cross it: its capacity, capped by its video ceiling (`max_kbps`);
        either alone when only one is configured; None when neither is."""
        c = self.config
        limits = [kbps * 1000 for kbps in ((c.capacity_kbps, c.max_kbps) if c else ()) if kbps]
        return float(min(limits)) if limits else None

    def limits(self) -> str:
        """Why `auto` sends sub over this link, in words ("" if it does not)."""
        if not self.allows_main():
            allowed = self.allowed_profiles()
            return (f"{self.id} allows {' and '.join(allowed)} only" if allowed
                    else f"{self.id} allows no stream")
        return f"{self.id} is constrained" if self.constrained else ""

    def to_json(self) -> Json:
        c, s = self.config, self.status
        return {"id": self.id,
                "name": (c.name if c else "") or (s.name if s else ""),
                "kind": self.kind,
                "constrained": self.constrained,
                "state": s.state if s else "unknown",
                "rtt_ms": s.rtt_ms if s else None,
                "loss_pct": s.loss_pct if s else None,
                "tx_kbps": s.tx_kbps if s else None,
                "rx_kbps": s.rx_kbps if s else None,
                "capacity_kbps": c.capacity_kbps if c else None,
                "max_kbps": c.max_kbps if c else None,
                "profiles": list(self.allowed_profiles()),
                "active": self.active,
                "forced": bool(s and s.forced),
                "detail": s.detail if s else "",
                "jitter_ms": s.jitter_ms if s else None,
                "used_today_mb": s.used_today_mb if s else None,
                "budget_today_mb": s.budget_today_mb if s else None,
                "used_incident_mb": s.used_incident_mb if s else None,
                "budget_incident_mb": s.budget_incident_mb if s else None}


class Watcher:
    """One SSE reader's pending changes, coalesced by (kind, id)."""

    def __init__(self, state: UplinkState) -> None:
        self._state = state
        self._pending: dict[tuple[str, str], None] = {}
        self._event = asyncio.Event()

    def note(self, kind: str, key: str) -> None:
        self._pending[(kind, key)] = None
        self._event.set()

    async def next(self) -> list[tuple[str, Any]]:
        """The changed objects' current values, as (event name, JSON value)."""
        await self._event.wait()
        await asyncio.sleep(COALESCE_S)
        self._event.clear()
        keys, self._pending = list(self._pending), {}
        return [(kind, self._state.json_of(kind, key)) for kind, key in keys]

    def close(self) -> None:
        self._state._watchers.discard(self)


class UplinkState:
    def __init__(self, config: VehicleConfig,
                 sessions: Callable[[], list[Json]] = lambda: []) -> None:
        self.vehicle = config.vehicle
        # On a replay bus, ages are the replay's: a replayed camera that was live is live.
        self.clock = ReplayTime()
        self.mirror = Mirror(cameras=[c.id for c in config.cameras],
                             links=[link.id for link in config.links], clock=self.clock)
        self.cameras: dict[str, CameraState] = {
            c.id: CameraState(self.mirror.cameras[c.id], c.name, config=c, clock=self.clock)
            for c in config.cameras}
        self.drones: dict[str, DroneState] = {}
        self.links: dict[str, LinkState] = {
            link.id: LinkState(link.id, config=link, record=self.mirror.links[link.id],
                               clock=self.clock)
            for link in config.links}
        self.sessions = sessions
        self.extra: Callable[[], Json] = lambda: {}
        self._watchers: set[Watcher] = set()
        # Called with (camera_id, profile, stream) when a camera (re)announces a stream.
        self.on_stream: Callable[[str, str, CameraStream], None] = lambda *_: None
        # Called with the link's id whenever a link's status is heard (the active link
        # may have changed: open sessions follow it).
        self.on_link: Callable[[str], None] = lambda _: None

    # -- reading ---------------------------------------------------------------------
    def camera(self, camera_id: str) -> CameraState | None:
        return self.cameras.get(camera_id)

    def active_link(self) -> LinkState | None:
        """The WAN that carries the tunnel to the centre now, as the links service said
        lately (:attr:`LinkState.active`); None when no links service reports one (none
        runs, it has not yet, or it fell silent). Should two say so (a change is
        published link by link), the one heard last."""
        active = [link for link in self.links.values() if link.active]
        return max(active, key=lambda link: link.status_ts or 0.0, default=None)

    def active_profiles(self) -> tuple[str, ...] | None:
        """The stream profiles the active link lets cross; None without an active link
        (then nothing is held back by link: see :meth:`constrained`)."""
        active = self.active_link()
        return None if active is None else active.allowed_profiles()

    def constrained(self) -> bool:
        """Whether the centre is behind a thin pipe (`auto` then sends the sub stream).

        With an active link reported: that link is constrained or does not let the main
        stream cross. Without one (no links service, or not yet), as before the links
        service existed: every link that is up is constrained."""
        active = self.active_link()
        if active is not None:
            return active.constrained or not active.allows_main()
        up = [link for link in self.links.values() if link.up]
        return bool(up) and all(link.constrained for link in up)

    def constrained_why(self) -> str:
        """Why :meth:`constrained` is true, in words ("" when it is not)."""
        if not self.constrained():
            return ""
        active = self.active_link()
        if active is not None:
            return active.limits()
        return "every link that is up is constrained"

    def capacity_bps(self) -> float | None:
        """What the centre's viewers can get through, if known.

        With an active link reported: that link's capacity, capped by its `max_kbps`.
        Without one (no links service, or not yet), as before: the best link that is up
        (every configured link counts as up until reported down), if its capacity is
        known."""
        active = self.active_link()
        if active is not None:
            return active.capacity_bps()
        caps = [link.config.capacity_kbps * 1000 for link in self.links.values()
                if link.up and link.config is not None and link.config.capacity_kbps]
        return float(max(caps)) if caps else None

    def json_of(self, kind: str, key: str) -> Any:
        if kind == "camera":
            cam = self.cameras.get(key)
            return cam.to_json() if cam else {"id": key, "state": "gone"}
        if kind == "drone":
            drone = self.drones.get(key)
            return drone.to_json() if drone else {"id": key}
        if kind == "link":
            link = self.links.get(key)
            return link.to_json() if link else {"id": key}
        if kind == "sessions":
            return self.sessions()
        if kind == "replay":
            return self.replay_json()
        return None

    def replay_json(self) -> Json | None:
        """Where the replay is (`replay/status`), on a replay's bus; None on a vehicle's."""
        status = self.clock.status
        return None if status is None else status.to_body()

    def snapshot(self) -> Json:
        active = self.active_link()
        return {
            "vehicle": self.vehicle,
            "time_ns": time.time_ns(),
            "constrained": self.constrained(),
            "active_link": active.id if active else None,
            "cameras": [c.to_json() for c in self.cameras.values()],
            "drones": [d.to_json() for d in sorted(self.drones.values(), key=lambda d: d.id)],
            "links": [link.to_json() for link in self.links.values()],
            "sessions": self.sessions(),
            "replay": self.replay_json(),
            **self.extra(),
        }

    def thumbnail(self, camera_id: str) -> tuple[bytes, int] | None:
        cam = self.cameras.get(camera_id)
        if cam is None or cam.thumbnail is None:
            return None
        return cam.thumbnail, cam.thumbnail_ns

    # -- watching --------------------------------------------------------------------
    def watch(self) -> Watcher:
        w = Watcher(self)
        self._watchers.add(w)
        return w

    def changed(self, kind: str, key: str = "") -> None:
        for w in self._watchers:
            w.note(kind, key)

    # -- following the bus -----------------------------------------------------------
    async def follow(self, bus: BusClient) -> None:
        while True:
            sub = bus.subscribe(topics.CAM, topics.DRONE, topics.LINK, topics.REPLAY)
            try:
                async for env in sub:
                    if isinstance(env.message, ReplayStatus):
                        self.clock.take(env.message)
                        self.changed("replay")  # the viewer page's replay bar follows it
                        if self.clock.forget:
                            # A replay seek: recorded messages come again with their old
                            # sequence numbers; a fresh subscription takes them, and the
                            # broker's cache hands it every state topic as of the target.
                            self.clock.forget = False
                            break
                        continue
                    self.apply(env)
            finally:
                sub.close()

    def apply(self, env: Envelope) -> None:
        if isinstance(env.message, PtzStatus):
            if is_news(env):
                self._control(env.topic, env.message)
            return
        change = self.mirror.take(env)
        if change is None:
            return
        msg, key = change.heard.message, change.key
        if change.kind == "camera":
            cam = self.cameras.get(key)
            if cam is None:
                # A camera the config does not name (a newer config elsewhere): shown, not hidden.
                name = msg.name if isinstance(msg, CameraStatus) else ""
                cam = self.cameras[key] = CameraState(self.mirror.cameras[key], name or key,
                                                      clock=self.clock)
            if isinstance(msg, CameraStream):
                old = change.replaced
                if not isinstance(old, CameraStream) or (
                        (old.codec, old.profile_level_id) != (msg.codec, msg.profile_level_id)):
                    self.changed("camera", key)
                self.on_stream(key, msg.profile, msg)
            else:
                self.changed("camera", key)
        elif change.kind == "drone" and isinstance(msg, DroneStatus | DroneTelemetry):
            if key not in self.drones:
                self.drones[key] = DroneState(self.mirror.drones[key], self.clock)
            self.changed("drone", key)
        elif change.kind == "link":
            if key not in self.links:
                self.links[key] = LinkState(key, record=self.mirror.links[key], clock=self.clock)
            self.changed("link", key)
            self.on_link(key)

    def _control(self, topic: str, msg: PtzStatus) -> None:
        """A camera's steering state: kept for a camera the uplink shows (the config's, or
        one heard of), else dropped: its status brings the camera first."""
        parts = topic.split(topics.SEP)
        cam = self.cameras.get(parts[1] if len(parts) >= 3 else msg.camera_id)
        if cam is not None:
            cam.control = msg
            self.changed("camera", cam.id)
