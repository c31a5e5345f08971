"""The centre page's model: each vehicle's devices, its last contact, and one timeline.

What it is fed is what the centre's JetStream holds (:mod:`edge.centre.page.feed`): a
subject, a JSON body and the bridge's headers (``Edge-Topic``, ``Edge-Type``,
``Edge-Ts``; :mod:`edge.sync.bridge`). Each message is turned back into the bus's own
message type and given to a per-vehicle :class:`~edge.bus.mirror.Mirror`, so the page
ages and judges devices by the same rule as the dashboard and the uplink (stamps from
the vehicle's clock, never later than ours; ``silent`` after ``SILENT_S``).

**Last contact** is the newest ``Edge-Ts`` heard from a vehicle (capped at our clock).
A vehicle is *out of contact* when that is older than ``contact_timeout_s``: its sync
service's own health goes every ``health_every_s`` (5 s) whatever else happens, so
silence beyond two of them and a satellite hop is the link, not a quiet vehicle.
What arrives late (the backlog after an outage) keeps its own stamps: a device shows
its true age, and the timeline puts each event where it happened.

A message that cannot be read (bad JSON, a missing header, a body that does not fit
its type) is skipped and counted per vehicle and reason; the page goes on.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import bisect
import json
import logging
import time
import typing
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from edge.bus import topics
from edge.bus.messages import (
    CAMERA_STATES,
    DRONE_STATES,
    LINK_STATES,
    MESSAGE_TYPES,
    Alert,
    CommandEvent,
    EventMark,
    Message,
    PushFeed,
    SchemaError,
    UplinkPushStatus,
)
from edge.bus.mirror import OLD_S, SILENT_S, STALE_S, CameraRecord, DroneRecord, Mirror, known

log = logging.getLogger(__name__)

Contact = Literal["in", "out", "never"]
EventKind = Literal["alert", "mark", "command"]
# Changes waiting for one reader; beyond this it is sent the whole state instead.
WATCH_BACKLOG = 1000
_BYTES_FIELDS: dict[type[Message], tuple[str, ...]] = {}


class Unreadable(ValueError):
    """A message the page skips; the text is the reason it is counted under."""


def _bytes_fields(cls: type[Message]) -> tuple[str, ...]:
    # The bridge sends bytes as base64 (JSON has no bytes); these fields take them back.
    found = _BYTES_FIELDS.get(cls)
    if found is None:
        hints = typing.get_type_hints(cls)
        found = _BYTES_FIELDS[cls] = tuple(n for n, _ in cls._FIELDS if hints.get(n) is bytes)
    return found


def decode(data: bytes, headers: Mapping[str, str] | None) -> tuple[str, int, Message]:
    """(bus topic, stamp ns, message) of one bridged NATS message, or :class:`Unreadable`."""
    h = headers or {}
    topic = h.get("Edge-Topic", "")
    if not topic:
        raise Unreadable("no Edge-Topic header")
    ts_ns = stamp_of(h)
    cls = MESSAGE_TYPES.get(h.get("Edge-Type", ""))
    if cls is None:
        raise Unreadable("unknown Edge-Type")
    try:
        body = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise Unreadable("bad JSON") from None
    if not isinstance(body, dict):
        raise Unreadable("body is not a JSON object")
    for name in _bytes_fields(cls):
        if isinstance(body.get(name), str):
            try:
                body[name] = base64.b64decode(body[name], validate=True)
            except (binascii.Error, ValueError):
                raise Unreadable("bad base64") from None
    try:
        return topic, ts_ns, cls.from_body(body)
    except SchemaError:
        raise Unreadable("body does not fit its type") from None


def stamp_of(headers: Mapping[str, str]) -> int:
    """The producer's stamp (ns) from ``Edge-Ts``, or :class:`Unreadable`."""
    try:
        ts_ns = int(headers.get("Edge-Ts", ""))
    except ValueError:
        raise Unreadable("no or bad Edge-Ts header") from None
    if ts_ns <= 0:
        raise Unreadable("no or bad Edge-Ts header")
    return ts_ns


@dataclass(slots=True, frozen=True)
class Entry:
    """One line of the timeline: an alert, a mark or a command, from one vehicle."""

    vehicle: str
    seq: int  # the centre stream's sequence: ties broken, repeats recognised
    ts_ns: int
    kind: EventKind
    severity: str
    source: str
    text: str

    @property
    def key(self) -> tuple[int, str, int]:
        return (self.ts_ns, self.vehicle, self.seq)

    def to_json(self) -> dict[str, Any]:
        return {"id": f"{self.vehicle}:{self.seq}", "vehicle": self.vehicle,
                "ts_ms": self.ts_ns // 1_000_000, "kind": self.kind,
                "severity": self.severity, "source": self.source, "text": self.text}


def entry_of(vehicle: str, seq: int, topic: str, ts_ns: int, msg: Message) -> Entry | None:
    if isinstance(msg, Alert):
        source = msg.source or topic.removeprefix(topics.ALERT).lstrip(topics.SEP)
        return Entry(vehicle, seq, ts_ns, "alert", msg.severity, source, msg.text)
    if isinstance(msg, EventMark):
        return Entry(vehicle, seq, ts_ns, "mark", "notice", msg.author, msg.note)
    if isinstance(msg, CommandEvent):
        text = f"{msg.action} {msg.subject}: {msg.status}" + (
            f" ({msg.detail})" if msg.detail else "")
        severity = "info" if msg.status == "accepted" else "warning"
        return Entry(vehicle, seq, ts_ns, "command", severity, msg.by or msg.service, text)
    return None


def _ms(ts: float | None) -> int | None:
    return None if ts is None else int(ts * 1000)


@dataclass
class VehicleView:
    """One vehicle as the centre knows it."""

    id: str
    mirror: Mirror
    uplink: bool = False  # roll-call and thumbnails configured
    last_contact: float | None = None  # seconds, the vehicle's clock capped at ours
    received: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    problem: str = ""  # why the centre cannot read this vehicle now ("": it can)
    push: list[PushFeed] = field(default_factory=list)  # feeds pushed up (WHIP)

    def contact(self, now: float, timeout_s: float) -> Contact:
        if self.last_contact is None:
            return "never"
        return "in" if now - self.last_contact <= timeout_s else "out"

    def to_json(self, now: float, timeout_s: float) -> dict[str, Any]:
        m = self.mirror
        pushed = {f.camera_id: f for f in self.push if f.state != "idle"}
        return {
            "id": self.id, "uplink": self.uplink, "problem": self.problem,
            "last_contact_ms": _ms(self.last_contact),
            "contact": self.contact(now, timeout_s),
            "received": self.received, "skipped": dict(self.skipped),
            "cameras": [_camera(r, now, pushed.get(r.id))
                        for r in sorted(m.cameras.values(), key=_id)],
            "drones": [_drone(r, now) for r in sorted(m.drones.values(), key=_id)],
            "links": [_link(r.id, r.status.message, r.status.ts)
                      for r in sorted(m.links.values(), key=_id) if r.status is not None],
            "services": [{"name": name, "state": h.message.state, "detail": h.message.detail,
                          "ts_ms": _ms(h.ts)} for name, h in sorted(m.services.items())],
            "viewers": None if m.sessions is None else len(m.sessions.message.sessions),
        }


def _id(record: Any) -> str:
    return str(record.id)


def _camera(r: CameraRecord, now: float, push: PushFeed | None = None) -> dict[str, Any]:
    st = r.status.message if r.status is not None else None
    return {
        "push": None if push is None else {
            "state": push.state, "retries": push.retries, "last_error": push.last_error,
            "profile": push.profile, "since_ms": _ms(push.since_ns / 1e9 or None)},
        "id": r.id, "name": (st.name if st is not None and st.name else r.id),
        "state": (known(st.state, CAMERA_STATES) or "unknown") if st is not None else "unknown",
        "condition": r.condition(now), "reason": st.reason if st is not None else "",
        "codec": st.codec if st is not None else "",
        "width": st.width if st is not None else 0, "height": st.height if st is not None else 0,
        "fps": st.fps if st is not None else 0.0, "kbps": st.kbps if st is not None else 0.0,
        "status_ms": _ms(r.status.ts if r.status is not None else None),
        "profiles": sorted(r.streams),
    }


def _drone(r: DroneRecord, now: float) -> dict[str, Any]:
    st = r.status.message if r.status is not None else None
    t = r.telemetry.message if r.telemetry is not None else None
    return {
        "id": r.id,
        "state": (known(st.state, DRONE_STATES) or "unknown") if st is not None else "unknown",
        "condition": r.condition(now), "mode": st.mode if st is not None else "",
        "armed": st.armed if st is not None else False,
        "battery_pct": t.battery_pct if t is not None else None,
        "lat": t.lat if t is not None else None, "lon": t.lon if t is not None else None,
        "alt_rel_m": t.alt_rel_m if t is not None else None,
        "status_ms": _ms(r.status.ts if r.status is not None else None),
        "telemetry_ms": _ms(r.telemetry.ts if r.telemetry is not None else None),
    }


def _link(link_id: str, st: Any, ts: float) -> dict[str, Any]:
    return {"id": link_id, "name": st.name or link_id, "kind": st.kind,
            "state": known(st.state, LINK_STATES) or "unknown", "active": st.active,
            "rtt_ms": st.rtt_ms, "loss_pct": st.loss_pct, "ts_ms": _ms(ts)}


class Watcher:
    """What changed since a reader last looked: vehicles by id, new timeline entries."""

    def __init__(self, owner: PageState) -> None:
        self._owner = owner
        self.vehicles: set[str] = set()
        self.entries: list[Entry] = []
        self.everything = False  # too much piled up: send the whole state
        self._wake = asyncio.Event()

    def _vehicle(self, vehicle: str) -> None:
        self.vehicles.add(vehicle)
        self._wake.set()

    def _entry(self, entry: Entry) -> None:
        if len(self.entries) >= WATCH_BACKLOG:
            self.everything = True
            self.entries.clear()
        elif not self.everything:
            self.entries.append(entry)
        self._wake.set()

    async def next(self, coalesce_s: float = 0.2) -> tuple[set[str], list[Entry], bool]:
        """Wait for a change; then, after `coalesce_s` more of them, everything changed."""
        await self._wake.wait()
        # A vehicle's telemetry and statuses come in bursts: one event for the burst.
        await asyncio.sleep(coalesce_s)
        out = (self.vehicles, self.entries, self.everything)
        self.vehicles, self.entries, self.everything = set(), [], False
        self._wake.clear()
        return out

    def close(self) -> None:
        self._owner._watchers.discard(self)


class PageState:
    """Every vehicle the page shows, fed message by message (see the module's text)."""

    def __init__(self, vehicles: Iterable[str], contact_timeout_s: float = 12.0,
                 timeline_max: int = 500, uplinks: Iterable[str] = (),
                 clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.contact_timeout_s = contact_timeout_s
        self.timeline_max = timeline_max
        with_uplink = set(uplinks)
        self.vehicles: dict[str, VehicleView] = {
            v: VehicleView(v, Mirror(clock=clock), uplink=v in with_uplink) for v in vehicles}
        self.timeline: list[Entry] = []  # oldest first, by (stamp, vehicle, sequence)
        self._keys: list[tuple[int, str, int]] = []
        self._seen: set[tuple[str, int]] = set()
        self._watchers: set[Watcher] = set()
        self._logged: set[str] = set()

    # -- feeding ------------------------------------------------------------------------
    def take(self, vehicle: str, seq: int, data: bytes, headers: Mapping[str, str] | None,
             *, devices: bool = True, events: bool = True) -> bool:
        """One message of `vehicle`'s centre stream (its sequence `seq`); whether it was
        taken (False: skipped and counted, or a vehicle this page does not show). A reader
        of only `devices` or only `events` passes the other by (still as contact)."""
        view = self.vehicles.get(vehicle)
        if view is None:
            return False
        now = self.clock()
        h = headers or {}
        try:
            # Any stamped message is contact, even one we cannot read further.
            heard = min(now, stamp_of(h) / 1e9)
            if view.last_contact is None or heard > view.last_contact:
                view.last_contact = heard
                self._changed(vehicle)
        except Unreadable:
            pass  # counted below, by the reader it was meant for
        topic = h.get("Edge-Topic", "")
        is_event = topic.startswith(topics.ALERT) or topic in (topics.EVENT_MARK,
                                                               topics.EVENT_COMMAND)
        if not (events if is_event else devices):
            return False
        view.received += 1
        try:
            topic, ts_ns, msg = decode(data, headers)
        except Unreadable as e:
            self._skip(view, str(e), headers)
            return False
        if is_event:
            entry = entry_of(vehicle, seq, topic, ts_ns, msg)
            if entry is None:
                self._skip(view, "body does not fit its type", headers)
                return False
            self._add_entry(entry)
            return True
        if isinstance(msg, UplinkPushStatus):
            # Which feeds the vehicle pushes to the centre's media server (the mirror
            # keeps what a dashboard needs; this is the centre's own business).
            if view.push != msg.feeds:
                view.push = list(msg.feeds)
                self._changed(vehicle)
            return True
        if view.mirror.apply(topic, msg, ts_ns) is not None:
            self._changed(vehicle)
        return True

    def set_problem(self, vehicle: str, problem: str) -> None:
        view = self.vehicles.get(vehicle)
        if view is not None and view.problem != problem:
            view.problem = problem
            self._changed(vehicle)

    def _skip(self, view: VehicleView, why: str, headers: Mapping[str, str] | None) -> None:
        view.skipped[why] += 1
        if why not in self._logged:
            self._logged.add(why)
            topic = (headers or {}).get("Edge-Topic", "?")
            log.warning("vehicle %s: a message on %s skipped (%s); further ones are only "
                        "counted", view.id, topic[:100], why)
        self._changed(view.id)

    def _add_entry(self, entry: Entry) -> None:
        if (entry.vehicle, entry.seq) in self._seen:
            return  # read again after a resubscription
        i = bisect.bisect(self._keys, entry.key)
        if len(self.timeline) >= self.timeline_max:
            if i == 0:
                return  # older than everything kept
            dropped = self.timeline.pop(0)
            self._keys.pop(0)
            self._seen.discard((dropped.vehicle, dropped.seq))
            i -= 1
        self.timeline.insert(i, entry)
        self._keys.insert(i, entry.key)
        self._seen.add((entry.vehicle, entry.seq))
        for w in self._watchers:
            w._entry(entry)

    def _changed(self, vehicle: str) -> None:
        for w in self._watchers:
            w._vehicle(vehicle)

    # -- reading ------------------------------------------------------------------------
    def watch(self) -> Watcher:
        w = Watcher(self)
        self._watchers.add(w)
        return w

    def rules(self) -> dict[str, float]:
        """The age rules the browser applies with its own clock."""
        return {"stale_s": STALE_S, "silent_s": SILENT_S, "old_s": OLD_S,
                "contact_s": self.contact_timeout_s}

    def vehicle_json(self, vehicle: str) -> dict[str, Any]:
        return self.vehicles[vehicle].to_json(self.clock(), self.contact_timeout_s)

    def snapshot(self) -> dict[str, Any]:
        now = self.clock()
        return {"now_ms": _ms(now), "rules": self.rules(),
                "vehicles": [v.to_json(now, self.contact_timeout_s)
                             for v in self.vehicles.values()],
                "timeline": [e.to_json() for e in self.timeline]}
