"""What the centre sees of the vehicle: cameras, drones, links and sessions, from the bus.

:class:`UplinkState` follows the bus (`cam/`, `drone/`, `link/`; the broker's
last-value cache fills it at once when the uplink starts) and answers two
kinds of reader:

- the WHEP handlers, which ask whether a camera exists, is live and where
  its streams are;
- `/api/state` (a JSON snapshot) and `/api/events` (server-sent events of the
  same objects). An SSE reader gets a :class:`Watcher`: changes are coalesced
  by object and read at most every :data:`COALESCE_S`, so a slow reader gets
  the latest value of each object rather than a growing queue.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

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
)
from edge.config import CameraConfig, VehicleConfig, WanLinkConfig

COALESCE_S = 0.2
# A camera whose status has not been heard for this long is not live, whatever
# it said last (its process may be gone).
STATUS_STALE_S = 5.0

Json = dict[str, Any]


@dataclass
class CameraState:
    id: str
    name: str
    config: CameraConfig | None = None
    status: CameraStatus | None = None
    status_mono: float = 0.0
    streams: dict[str, CameraStream] = field(default_factory=dict)
    thumbnail: bytes | None = None
    thumbnail_ns: int = 0

    @property
    def drone(self) -> str | None:
        return self.config.drone if self.config else None

    @property
    def state(self) -> str:
        if self.status is None:
            return "unknown"
        if time.monotonic() - self.status_mono > STATUS_STALE_S:
            return "silent"
        return self.status.state

    @property
    def reason(self) -> str:
        if self.status is None:
            return "no status from the camera service yet"
        if self.state == "silent":
            return f"no status from the camera service for over {STATUS_STALE_S:.0f} s"
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
        }


@dataclass
class DroneState:
    id: str
    status: DroneStatus | None = None
    telemetry: DroneTelemetry | None = None

    def to_json(self) -> Json:
        return {"id": self.id,
                "status": self.status.to_body() if self.status else None,
                "telemetry": self.telemetry.to_body() if self.telemetry else None}


@dataclass
class LinkState:
    id: str
    config: WanLinkConfig | None = None
    status: LinkStatus | None = None

    @property
    def constrained(self) -> bool:
        return bool(self.config and self.config.constrained)

    @property
    def up(self) -> bool:
        # A link nobody reports on yet may well be up; only a reported "down" is down.
        return self.status is None or self.status.state in ("up", "degraded", "unknown")

    def to_json(self) -> Json:
        c, s = self.config, self.status
        return {"id": self.id,
                "name": (c.name if c else "") or (s.name if s else ""),
                "kind": (c.kind if c else "") or (s.kind if s else ""),
                "constrained": self.constrained,
                "state": s.state if s else "unknown",
                "rtt_ms": s.rtt_ms if s else None,
                "loss_pct": s.loss_pct if s else None,
                "tx_kbps": s.tx_kbps if s else None,
                "rx_kbps": s.rx_kbps if s else None,
                "capacity_kbps": c.capacity_kbps if c else None}


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
        self.cameras: dict[str, CameraState] = {
            c.id: CameraState(c.id, c.name, config=c) for c in config.cameras}
        self.drones: dict[str, DroneState] = {}
        self.links: dict[str, LinkState] = {
            link.id: LinkState(link.id, config=link) for link in config.links}
        self.sessions = sessions
        self.extra: Callable[[], Json] = lambda: {}
        self._watchers: set[Watcher] = set()
        # Called with (camera_id, profile, stream) when a camera (re)announces a stream.
        self.on_stream: Callable[[str, str, CameraStream], None] = lambda *_: None

    # -- reading ---------------------------------------------------------------------
    def camera(self, camera_id: str) -> CameraState | None:
        return self.cameras.get(camera_id)

    def constrained(self) -> bool:
        """True when every link that is up is constrained (the centre is behind a thin pipe)."""
        up = [link for link in self.links.values() if link.up]
        return bool(up) and all(link.constrained for link in up)

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
        return None

    def snapshot(self) -> Json:
        return {
            "vehicle": self.vehicle,
            "time_ns": time.time_ns(),
            "constrained": self.constrained(),
            "cameras": [c.to_json() for c in self.cameras.values()],
            "drones": [d.to_json() for d in sorted(self.drones.values(), key=lambda d: d.id)],
            "links": [link.to_json() for link in self.links.values()],
            "sessions": self.sessions(),
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
        async for env in bus.subscribe(topics.CAM, topics.DRONE, topics.LINK):
            self.apply(env)

    def apply(self, env: Envelope) -> None:
        msg = env.message
        if isinstance(msg, CameraStatus) and msg.camera_id:
            cam = self._camera(msg.camera_id, msg.name)
            cam.status, cam.status_mono = msg, time.monotonic()
            self.changed("camera", cam.id)
        elif isinstance(msg, CameraStream) and msg.camera_id and msg.profile:
            cam = self._camera(msg.camera_id)
            old = cam.streams.get(msg.profile)
            cam.streams[msg.profile] = msg
            if old is None or (old.codec, old.profile_level_id) != (msg.codec,
                                                                   msg.profile_level_id):
                self.changed("camera", cam.id)
            self.on_stream(cam.id, msg.profile, msg)
        elif isinstance(msg, CameraThumbnail) and msg.camera_id and env.blobs:
            cam = self._camera(msg.camera_id)
            cam.thumbnail, cam.thumbnail_ns = env.blobs[0], msg.captured_ns or time.time_ns()
            self.changed("camera", cam.id)
        elif isinstance(msg, DroneStatus) and msg.drone_id:
            self._drone(msg.drone_id).status = msg
            self.changed("drone", msg.drone_id)
        elif isinstance(msg, DroneTelemetry) and msg.drone_id:
            self._drone(msg.drone_id).telemetry = msg
            self.changed("drone", msg.drone_id)
        elif isinstance(msg, LinkStatus) and msg.link_id:
            link = self.links.get(msg.link_id)
            if link is None:
                link = self.links[msg.link_id] = LinkState(msg.link_id)
            link.status = msg
            self.changed("link", msg.link_id)

    def _camera(self, camera_id: str, name: str = "") -> CameraState:
        cam = self.cameras.get(camera_id)
        if cam is None:
            # A camera the config does not name (a newer config elsewhere): shown, not hidden.
            cam = self.cameras[camera_id] = CameraState(camera_id, name or camera_id)
        return cam

    def _drone(self, drone_id: str) -> DroneState:
        drone = self.drones.get(drone_id)
        if drone is None:
            drone = self.drones[drone_id] = DroneState(drone_id)
        return drone

