"""The recorded bus, republished at the replay clock.

:class:`BusIndex` reads a session's bus logs (MCAP, :mod:`edge.recorder.bus_log`)
once at the start and keeps, per *state* topic (:func:`edge.bus.topics.is_state`),
the log time of every message and the file it is in (ints, not the messages:
an hour of thumbnails would not fit in memory), plus the times of marks and
alerts for next/previous. Files that are missing or cannot be read are gaps;
a torn file (the recorder crashed) replays its complete chunks and says so.

:class:`BusPlayer` runs in a thread of its own. From the clock's position it
reads the files in time order and hands each message's frames, exactly as
recorded, to `send` when its log time comes due. After a seek (and at the
start) it first sends the *last-value state* as of the new position: the
latest message of every state topic logged before it, read back from the
files the index points at, oldest first; then it continues from the position.

At speed, more messages can come due than a follower wants (a dashboard redraws
at 4 Hz): above `max_rate` messages a second the player thins, per topic, the
latest value winning, and never reorders. A message the budget cannot take is
held (replacing an older held one of its topic, which then takes the newer
one's place in line) and sent, in log-time order, as the budget allows; alerts
and marks are events, never thinned. `thinned` counts what was dropped.

The recording vehicle's broker health is not republished (:data:`NOT_REPLAYED`).
Frames are sent byte for byte, with one exception the caller makes
(:func:`rewrite_stream_endpoint`): a camera's stream announcement names the
media endpoint of the replay, not the recorded vehicle's live one.
"""

from __future__ import annotations

import bisect
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from pathlib import Path

import msgpack

from edge.bus import topics
from edge.recorder.bus_log import BusLogError, LoggedMessage, is_whole, read
from edge.recorder.catalog import BusLogRow
from edge.replay.clock import ReplayClock
from edge.replay.gaps import Gap, GapLog

log = logging.getLogger(__name__)

_ALERT = topics.ALERT.encode()
_MARK = topics.EVENT_MARK.encode()
_CAM = topics.CAM.encode()
_STREAM_TYPE = "cam.stream"
_EVENTS = (_ALERT, topics.EVENT.encode())
#: Recorded, never republished: the recording vehicle's broker health. A replay's bus
#: has a broker of its own (:mod:`edge.replay.replay_bus`), whose heartbeat is the one
#: that says whether this bus is alive.
NOT_REPLAYED = frozenset({topics.svc_health(topics.BUS_SERVICE).encode()})
# Messages a second the replay bus carries before thinning: a vehicle's own rate at 1×
# (tens a second) fits many times over; 16× a busy vehicle does not.
MAX_RATE = 1000.0


@dataclass(slots=True)
class _TopicTimes:
    name: str  # the channel's topic, what `read(topics=...)` filters on
    times: list[int] = field(default_factory=list)
    files: list[int] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class BusFile:
    path: Path
    first_ns: int | None
    last_ns: int | None


class BusIndex:
    """The state topics and events of a session's bus logs; see the module docstring."""

    def __init__(self, rows: list[BusLogRow], gaps: GapLog) -> None:
        self.gaps = gaps
        self.files: list[BusFile] = []
        self.state: dict[bytes, _TopicTimes] = {}
        self.events: list[int] = []  # log times of marks and alerts, sorted
        self.alerts: list[int] = []  # of alerts alone, sorted
        self.messages = 0
        for row in sorted(rows, key=lambda r: (r.first_ns is None, r.first_ns or 0)):
            self._index(row)
        self.events.sort()
        self.alerts.sort()

    def _index(self, row: BusLogRow) -> None:
        path = row.path
        if not path.exists():
            self.gaps.add(Gap("bus", path, "is missing: not replayed", row.first_ns,
                              row.last_ns))
            return
        n = len(self.files)
        first = last = None
        try:
            if not is_whole(path):
                self.gaps.add(Gap("bus", path, "is torn: its complete chunks are replayed",
                                  row.first_ns, row.last_ns))
            for m in read(path):
                t = m.log_time_ns
                first = t if first is None else first
                last = t
                self.messages += 1
                topic = m.frames[0] if m.frames else b""
                if topic in NOT_REPLAYED:
                    continue
                if topics.is_state(topic):
                    entry = self.state.get(topic)
                    if entry is None:
                        entry = self.state[topic] = _TopicTimes(m.topic)
                    entry.times.append(t)
                    entry.files.append(n)
                elif topic.startswith(_ALERT) or topic == _MARK:
                    self.events.append(t)
                    if topic != _MARK:
                        self.alerts.append(t)
        except (BusLogError, OSError) as e:
            self.gaps.add(Gap("bus", path, f"is damaged ({e}): replayed up to the damage",
                              row.first_ns, row.last_ns))
        if first is not None:
            self.files.append(BusFile(path, first, last))

    def state_as_of(self, position_ns: int) -> list[list[bytes]]:
        """The latest message of every state topic logged before `position_ns`, oldest
        first."""
        wanted: dict[int, dict[str, int]] = {}  # file -> channel topic -> log time
        for entry in self.state.values():
            i = bisect.bisect_left(entry.times, position_ns) - 1
            if i >= 0:
                by_topic = wanted.setdefault(entry.files[i], {})
                by_topic[entry.name] = max(by_topic.get(entry.name, 0), entry.times[i])
        found: list[tuple[int, int, list[bytes]]] = []
        for n, by_topic in sorted(wanted.items()):
            latest: dict[bytes, tuple[int, int, list[bytes]]] = {}
            try:
                for k, m in enumerate(read(self.files[n].path, topics=by_topic,
                                           start_ns=min(by_topic.values()),
                                           end_ns=position_ns)):
                    latest[m.frames[0]] = (m.log_time_ns, k, m.frames)
            except (BusLogError, OSError) as e:
                self.gaps.add(Gap("bus", self.files[n].path, f"is damaged ({e})"))
            found += [(t, n * (1 << 32) + k, frames) for t, k, frames in latest.values()]
        found.sort(key=lambda x: (x[0], x[1]))
        return [frames for _, _, frames in found]

    def messages_from(self, position_ns: int, end_ns: int
                      ) -> Generator[LoggedMessage, None, None]:
        """Every message logged in [position_ns, end_ns], in the order recorded."""
        for f in self.files:
            if f.last_ns is not None and f.last_ns < position_ns:
                continue
            if f.first_ns is not None and f.first_ns > end_ns:
                return
            try:
                yield from read(f.path, start_ns=position_ns, end_ns=end_ns + 1)
            except (BusLogError, OSError) as e:
                self.gaps.add(Gap("bus", f.path, f"is damaged ({e}): replayed up to the "
                                                 "damage", f.first_ns, f.last_ns))


def rewrite_stream_endpoint(frames: list[bytes], endpoint_for: Callable[[str, str], str]
                            ) -> list[bytes]:
    """`frames` unchanged, unless they announce a camera's stream (`cam/<id>/<p>/stream`,
    type `cam.stream`): then the same header with a body whose `endpoint` is
    `endpoint_for(camera, profile)`. Consumers on the replay bus (the uplink, a recorder)
    follow that announcement; the recorded one names the live vehicle's camera."""
    if len(frames) < 3 or not frames[0].startswith(_CAM) or not frames[0].endswith(b"/stream"):
        return frames
    try:
        header = msgpack.unpackb(frames[1])
        if header[0] != _STREAM_TYPE:
            return frames
        body = msgpack.unpackb(frames[2])
        camera, profile = body.get("camera_id"), body.get("profile", "main")
        if not isinstance(camera, str) or not isinstance(profile, str):
            return frames
        body["endpoint"] = endpoint_for(camera, profile)
        return [frames[0], frames[1], msgpack.packb(body, use_bin_type=True), *frames[3:]]
    except Exception:  # malformed: republished as recorded, subscribers judge it
        return frames


class BusPlayer:
    """The bus log at the clock, in a thread; see the module docstring."""

    def __init__(self, index: BusIndex, clock: ReplayClock,
                 send: Callable[[list[bytes]], None], max_rate: float = MAX_RATE) -> None:
        self.index = index
        self.clock = clock
        self.send = send
        self.max_rate = max_rate
        self.sent = 0
        self.thinned = 0  # dropped for a newer message of the same topic
        self.state_sent = 0  # last-value messages sent on seeks and at the start
        self._tokens = max_rate
        self._tokens_at = time.monotonic()
        self._held: OrderedDict[object, list[bytes]] = OrderedDict()

    def run(self) -> None:
        clock = self.clock
        while not clock.stopped:
            generation = clock.generation
            position = clock.position_ns
            self._held.clear()
            for frames in self.index.state_as_of(position):
                if clock.generation != generation:
                    break
                self.send(frames)
                self.state_sent += 1
            else:
                if self._play(position, generation):
                    while not clock.stopped and not clock.wait_change(generation):
                        pass

    def _play(self, position: int, generation: int) -> bool:
        """Send from `position` at the clock; True at the end, False after a seek."""
        messages = self.index.messages_from(position, self.clock.end_ns)
        try:
            for m in messages:
                if not self.clock.wait_until(m.log_time_ns, generation):
                    return False
                self._offer(m.frames)
            self._flush(everything=True)
        finally:
            messages.close()  # closes the file it was reading
        return True

    def _offer(self, frames: list[bytes]) -> None:
        topic = frames[0] if frames else b""
        if topic in NOT_REPLAYED:
            return
        # An event is its own key (never replaced); a topic's newer value replaces the
        # held one and goes to the back of the line, so the order stays the log's.
        key: object = object() if topic.startswith(_EVENTS) else topic
        if self._held.pop(key, None) is not None:
            self.thinned += 1
        self._held[key] = frames
        self._flush()

    def _flush(self, everything: bool = False) -> None:
        now = time.monotonic()
        self._tokens = min(self.max_rate,
                           self._tokens + (now - self._tokens_at) * self.max_rate)
        self._tokens_at = now
        while self._held and (everything or self._tokens >= 1.0):
            _, frames = self._held.popitem(last=False)
            self.send(frames)
            self.sent += 1
            self._tokens -= 1.0
