"""One model of the vehicle from the bus: the latest message about every device, and when.

Every reader of vehicle state builds on :class:`Mirror` rather than folding bus
messages itself: the dashboard (``ui/state.py``) and the uplink's page for the
centre (``edge/uplink/state.py``) today; the links service, the recorder's index
and the centre sync next. So they agree on:

- **which device** a message is about: the topic's device part
  (``cam/<id>/status``), else the id in the message. An id is printable and at
  most :data:`MAX_ID_CHARS` long; anything else is counted (``odd``), not kept.
- **when** it was said: the producer's envelope stamp, never later than our
  own clock when it arrived (:class:`Heard`).
- **how old is too old**: one staleness rule, below.
- **replays**: a replay from the broker's last-value cache (``env.replayed``,
  told by sequence number) is something already taken; :meth:`Mirror.take`
  skips it, so it neither changes a value nor wakes a reader.
- **how many**: at most :data:`MAX_DEVICES` cameras, drones and links (and
  four times that many services), so a flood of invented ids grows nothing.

Staleness. Ages run from the producer's stamp, not from when we heard it: the
broker replays a dead service's last status to every late subscriber, and by
its stamp it is old at once, while by its arrival it would pass for fresh
(the uplink used to believe a dead camera's last ``live`` for 5 s after each
subscription). All the vehicle's processes read one host clock. Then:

- older than :data:`STALE_S` (3 s: a 1 Hz status missed twice), a value is
  *stale*: shown dimmed;
- a device whose status is older than :data:`SILENT_S` (5 s: five missed) is
  *silent*: its own word (``live``, ``down``) is no longer believed. The
  uplink then asks the media plane, which is why its states keep the names
  ``silent`` and ``unknown`` (no status ever);
- older than :data:`OLD_S` (10 s), a value is *old*: shown red.

Stream announcements (``cam/<id>/<profile>/stream``) are said once and hold
until replaced, so they are kept without an age.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

from edge.bus import topics
from edge.bus.envelope import Envelope
from edge.bus.messages import (
    CAMERA_STATES,
    DRONE_STATES,
    CameraStatus,
    CameraStream,
    CameraThumbnail,
    DroneStatus,
    DroneTelemetry,
    DroneVideo,
    LinkStatus,
    Message,
    RecorderStatus,
    ServiceHealth,
    UplinkSessions,
)

# The one staleness rule (see above): dim, not believed, red.
STALE_S = 3.0
SILENT_S = 5.0
OLD_S = 10.0

MAX_DEVICES = 64
MAX_SERVICES = 4 * MAX_DEVICES
MAX_SESSIONS = 256
MAX_ID_CHARS = 64

Clock = Callable[[], float]
Freshness = Literal["fresh", "stale", "old", "none"]
CameraCondition = Literal["live", "connecting", "standby", "down", "silent", "unknown"]
DroneCondition = Literal["live", "connecting", "lost", "silent", "unknown"]
# What one message changed: a device's kind, or the uplink's sessions.
Kind = Literal["camera", "drone", "link", "service", "sessions", "recorder"]

M = TypeVar("M", bound=Message)
W = TypeVar("W", bound=str)
R = TypeVar("R")


def age_of(ts: float | None, now: float) -> float | None:
    """Seconds since `ts`; a clock ahead of ours counts as just now, never negative."""
    if ts is None:
        return None
    return max(0.0, now - ts)


def freshness(age: float | None) -> Freshness:
    """'fresh', 'stale' (dim), 'old' (red) or 'none' (never heard of)."""
    if age is None:
        return "none"
    if age > OLD_S:
        return "old"
    if age > STALE_S:
        return "stale"
    return "fresh"


def is_news(env: Envelope) -> bool:
    """False for a replay of the broker's cache: something this subscriber already took.
    The one place a reader of the bus decides what a replay is worth (nothing)."""
    return not env.replayed


def known(word: object, words: Sequence[W]) -> W | None:
    """`word` if it is one of `words` (ignoring case and spaces around), else None.

    A ``Literal`` message field holds whatever string its writer sent (see
    :mod:`edge.bus.messages`): this is how a reader turns it into a word it knows."""
    if not isinstance(word, str):
        return None
    word = word.strip().lower()
    for w in words:
        if w == word:
            return w
    return None


@dataclass(slots=True)
class Heard(Generic[M]):
    """A message and when it was said: its producer's stamp, at most our clock on arrival."""

    message: M
    ts: float

    def age(self, now: float) -> float:
        return max(0.0, now - self.ts)


def message_of(heard: Heard[M] | None) -> M | None:
    return None if heard is None else heard.message


def ts_of(heard: Heard[Any] | None) -> float | None:
    return None if heard is None else heard.ts


class Latest(Generic[M]):
    """An attribute of a view over a record (an object with ``record``, possibly None):
    the record's latest message of one sort. ``status = Latest[CameraStatus]("status")``
    makes ``view.status`` the message, ``None`` while there is none.

    Assigning to it (a view with a ``clock``) sets the message as if heard just now."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, view: Any, owner: Any = None) -> M | None:
        record = view.record
        return None if record is None else message_of(getattr(record, self.name))

    def __set__(self, view: Any, message: M | None) -> None:
        setattr(view.record, self.name, None if message is None else Heard(message, view.clock()))


class Stamp:
    """When a view's record heard its latest message of one sort (``view.status_ts``)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, view: Any, owner: Any = None) -> float | None:
        record = view.record
        return None if record is None else ts_of(getattr(record, self.name))


@dataclass(slots=True)
class CameraRecord:
    id: str
    status: Heard[CameraStatus] | None = None
    streams: dict[str, CameraStream] = field(default_factory=dict)  # by profile
    thumbnail: Heard[CameraThumbnail] | None = None
    jpeg: bytes = b""  # the latest thumbnail's picture

    def condition(self, now: float) -> CameraCondition:
        """live | connecting | standby | down | silent (no status lately) | unknown (none, or
        a word this reader does not know)."""
        return _condition(now, CAMERA_STATES, self.status)


@dataclass(slots=True)
class DroneRecord:
    id: str
    status: Heard[DroneStatus] | None = None
    telemetry: Heard[DroneTelemetry] | None = None
    video: Heard[DroneVideo] | None = None

    def condition(self, now: float) -> DroneCondition:
        """live | connecting | lost | silent (neither status nor telemetry lately) | unknown.
        Telemetry alone, without a status yet, is a drone that is live."""
        return _condition(now, DRONE_STATES, self.status, self.telemetry)


def _condition(now: float, words: Sequence[W], status: Heard[Any] | None,
               *signs: Heard[Any] | None) -> W | Literal["live", "silent", "unknown"]:
    """A device's state: its status's own word while anything from it is recent, where
    `signs` are other signs of life (a drone's telemetry)."""
    heard = [h for h in (status, *signs) if h is not None]
    if not heard:
        return "unknown"
    if min(h.age(now) for h in heard) > SILENT_S:
        return "silent"
    if status is None:
        return "live"  # alive by another sign, and nothing says otherwise
    return known(status.message.state, words) or "unknown"


@dataclass(slots=True)
class LinkRecord:
    id: str
    status: Heard[LinkStatus] | None = None


# Where each device's message is kept: the kind of device, the field of the message
# that names it (when the topic does not), and the record's slot. Streams are kept by
# profile and without an age: each is said once and holds until replaced.
_PLACES: dict[type[Message], tuple[Kind, str, str]] = {
    CameraStatus: ("camera", "camera_id", "status"),
    CameraStream: ("camera", "camera_id", "streams"),
    CameraThumbnail: ("camera", "camera_id", "thumbnail"),
    DroneStatus: ("drone", "drone_id", "status"),
    DroneTelemetry: ("drone", "drone_id", "telemetry"),
    DroneVideo: ("drone", "drone_id", "video"),
    LinkStatus: ("link", "link_id", "status"),
}
_RECORDS: dict[Kind, Callable[[str], Any]] = {
    "camera": CameraRecord, "drone": DroneRecord, "link": LinkRecord}


@dataclass(slots=True, frozen=True)
class Change:
    """What one message changed: the kind and id of the thing it is about, the message as
    heard, whether the thing is new (first heard of), and the message of the same sort it
    replaced (the last status, the stream of the same profile, ...)."""

    kind: Kind
    key: str
    heard: Heard[Message]
    new: bool = False
    replaced: Message | None = None


class Mirror:
    """The latest of everything the bus says about the vehicle's devices.

    `cameras` and `links` are the ids known beforehand (the config's): they have a
    record from the start and count towards :data:`MAX_DEVICES`."""

    def __init__(self, cameras: Iterable[str] = (), links: Iterable[str] = (),
                 clock: Clock = time.time) -> None:
        self.clock = clock
        self.cameras: dict[str, CameraRecord] = {i: CameraRecord(i) for i in cameras}
        self.drones: dict[str, DroneRecord] = {}
        self.links: dict[str, LinkRecord] = {i: LinkRecord(i) for i in links}
        self.services: dict[str, Heard[ServiceHealth]] = {}
        self.sessions: Heard[UplinkSessions] | None = None
        self.recorder: Heard[RecorderStatus] | None = None
        self.odd = 0  # messages about no device we can name, or one too many

    def take(self, env: Envelope) -> Change | None:
        """Take a received envelope: what it changed, or None (a replay, not state, odd)."""
        if not is_news(env) or env.message is None:
            return None
        return self.apply(env.topic, env.message, env.header.ts_ns, env.blobs)

    def apply(self, topic: str, message: Message, ts_ns: int = 0,
              blobs: Sequence[bytes] = ()) -> Change | None:
        """Take one message as if it came on `topic`, stamped `ts_ns` (0: now)."""
        now = self.clock()
        heard: Heard[Message] = Heard(message, now if ts_ns <= 0 else min(now, ts_ns / 1e9))
        msg = message
        place = _PLACES.get(type(msg))
        if place is not None:
            return self._device(topic, msg, heard, blobs, *place)
        if isinstance(msg, ServiceHealth):
            return self._service(topic, msg, heard)
        if isinstance(msg, UplinkSessions):
            del msg.sessions[MAX_SESSIONS:]  # a viewer list is bounded like the devices
            replaced, self.sessions = message_of(self.sessions), Heard(msg, heard.ts)
            return Change("sessions", "", heard, replaced=replaced)
        if isinstance(msg, RecorderStatus):
            del msg.streams[MAX_DEVICES:]
            was = message_of(self.recorder)
            self.recorder = Heard(msg, heard.ts)
            return Change("recorder", "", heard, replaced=was)
        return None  # events (alerts, marks) and requests are nobody's state

    def _device(self, topic: str, msg: Message, heard: Heard[Message], blobs: Sequence[bytes],
                kind: Kind, id_field: str, slot: str) -> Change | None:
        if (isinstance(msg, CameraStream) and not msg.profile
                or isinstance(msg, CameraThumbnail) and not blobs):  # no picture
            self.odd += 1
            return None
        held: dict[str, Any] = (self.cameras if kind == "camera" else
                                self.drones if kind == "drone" else self.links)
        found = self._record(topic, getattr(msg, id_field), held, _RECORDS[kind])
        if found is None:
            return None
        record, new = found
        replaced: Message | None
        if isinstance(msg, CameraStream):
            replaced, record.streams[msg.profile] = record.streams.get(msg.profile), msg
        else:
            replaced = message_of(getattr(record, slot))
            setattr(record, slot, Heard(msg, heard.ts))
            if isinstance(msg, CameraThumbnail):
                record.jpeg = blobs[0]
        return Change(kind, record.id, heard, new, replaced)

    def _service(self, topic: str, msg: ServiceHealth, heard: Heard[Message]) -> Change | None:
        key = self._key(topic, msg.service, self.services, MAX_SERVICES)
        if key is None:
            return None
        replaced = message_of(self.services.get(key))
        self.services[key] = Heard(msg, heard.ts)
        return Change("service", key, heard, replaced is None, replaced)

    def _record(self, topic: str, named: str, held: dict[str, R],
                make: Callable[[str], R]) -> tuple[R, bool] | None:
        """The device's record, made if new (and whether it was), or None if not kept."""
        key = self._key(topic, named, held)
        if key is None:
            return None
        record = held.get(key)
        if record is None:
            record = held[key] = make(key)
            return record, True
        return record, False

    def _key(self, topic: str, named: str, held: Collection[str],
             most: int = MAX_DEVICES) -> str | None:
        """The device's id, if it is one we keep (None and counted as odd if not)."""
        parts = topic.split(topics.SEP)
        key = parts[1] if len(parts) >= 3 and parts[1] else named
        if (not key or len(key) > MAX_ID_CHARS or not key.isprintable()
                or key not in held and len(held) >= most):
            self.odd += 1
            return None
        return key
