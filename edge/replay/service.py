"""The replay vehicle: a recorded session on a bus and media plane of its own.

:func:`load_source` reads from the recorder's catalog what a time range holds
(bus logs, every camera stream's segments with their keyframes, marks).
:class:`ReplayVehicle` then plays it on a running broker (``edge replay``
runs one in-process, in a private runtime dir): a
:class:`~edge.replay.bus_player.BusPlayer` and one
:class:`~edge.replay.video_player.VideoPlayer` per stream, each in a thread,
all following one :class:`~edge.replay.clock.ReplayClock`.

**Controls** are ``ReplayCommand`` requests to the service name ``replay``
(:data:`~edge.bus.topics.REPLAY_SERVICE`), so the dashboard, the viewer page
and a script drive the same thing: play, pause, seek, next/previous mark or
alert, speed (0.25x to 16x), step (one second by default; pauses there). The
reply carries the status after it. ``replay/status`` (``ReplayStatus``, a
state topic) says where the clock is, 4 times a second and at every change.

Everything replayed and the status go out on one PUB socket of our own (the
recorded frames are sent as they are, not re-encoded by a bus client), under
a lock: the bus player's thread and the event loop share it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zmq

from edge.bus import envelope, topics
from edge.bus.client import BusClient, RequestError
from edge.bus.endpoints import Endpoints
from edge.bus.envelope import Envelope
from edge.bus.messages import (
    REPLAY_ACTIONS,
    REPLAY_EVENTS_MAX,
    REPLAY_SPEED_MAX,
    REPLAY_SPEED_MIN,
    Message,
    Ping,
    ReplayCommand,
    ReplayStateName,
    ReplayStatus,
    Reply,
)
from edge.media.publisher import MediaPublisher
from edge.recorder.catalog import BusLogRow, Catalog, Session
from edge.replay.bus_player import MAX_RATE, BusIndex, BusPlayer, rewrite_stream_endpoint
from edge.replay.clock import ReplayClock
from edge.replay.gaps import GapLog
from edge.replay.video_player import KEYFRAMES_ONLY_ABOVE, Segment, VideoPlayer

log = logging.getLogger(__name__)

SOURCE = "replay"
STATUS_EVERY_S = 0.25
# The last-value state at the start is looked for this far before it: what is
# announced once (a camera's stream, a drone's video) was logged when it came up.
STATE_LOOKBACK_NS = 600 * 1_000_000_000
# "Previous mark" from just after a mark goes to the one before it, not back to it.
PREVIOUS_SLACK_NS = 1_000_000_000
# How long the replay bus may take to pass our first message (a broker just started).
BUS_READY_S = 10.0
JOIN_S = 5.0


class ReplayError(Exception):
    """Nothing to replay, or the replay bus cannot be used; one line for the operator."""


@dataclass(frozen=True, slots=True)
class ReplaySource:
    """What a time range of the recordings holds (see :func:`load_source`)."""

    root: Path
    start_ns: int
    end_ns: int
    session: Session | None
    bus_logs: list[BusLogRow]
    streams: dict[tuple[str, str], list[Segment]]
    marks: list[int] = field(default_factory=list)


def load_source(catalog: Catalog, start_ns: int, end_ns: int,
                session: Session | None = None) -> ReplaySource:
    """The bus logs (from `STATE_LOOKBACK_NS` before the start), segments with their
    keyframes and marks of [start_ns, end_ns]. Blocking (SQLite). `ReplayError` when
    the range holds no recording at all."""
    if end_ns <= start_ns:
        raise ReplayError("the replay's end is not after its start")
    logs = catalog.bus_logs(start_ns=start_ns - STATE_LOOKBACK_NS, end_ns=end_ns + 1)
    streams: dict[tuple[str, str], list[Segment]] = {}
    for row in catalog.segments(start_ns=start_ns, end_ns=end_ns + 1):
        streams.setdefault((row.camera, row.stream), []).append(
            Segment(row, tuple(catalog.keyframes(row.id))))
    in_range = [b for b in logs if (b.last_ns is None or b.last_ns >= start_ns)]
    if not in_range and not streams:
        raise ReplayError("nothing was recorded in that time (no bus log, no video)")
    marks = [m.wall_ns for m in catalog.marks() if start_ns <= m.wall_ns <= end_ns]
    return ReplaySource(catalog.path.parent, start_ns, end_ns, session, logs, streams, marks)


class ReplayVehicle:
    """A session played on the broker at `endpoints`; see the module docstring."""

    def __init__(self, source: ReplaySource, endpoints: Endpoints, *, speed: float = 1.0,
                 paused: bool = False, max_bus_rate: float = MAX_RATE) -> None:
        if not REPLAY_SPEED_MIN <= speed <= REPLAY_SPEED_MAX:
            raise ReplayError(f"speed {speed:g} is outside {REPLAY_SPEED_MIN:g} to "
                              f"{REPLAY_SPEED_MAX:g}")
        self.source = source
        self.endpoints = endpoints
        self.clock = ReplayClock(source.start_ns, source.end_ns, speed=speed, paused=True)
        self._start_paused = paused
        self.max_bus_rate = max_bus_rate
        self.gaps = GapLog()
        self.index: BusIndex | None = None
        self.bus_player: BusPlayer | None = None
        self.video: list[VideoPlayer] = []
        self.events: list[int] = []
        self._marks: list[int] = []
        self._alerts: list[int] = []
        self.seeks = 0
        self._publishers: list[MediaPublisher] = []
        self._threads: list[threading.Thread] = []
        self._send_lock = threading.Lock()
        self._seq = 0
        self._bus: BusClient | None = None
        self._pub: zmq.Socket[bytes] | None = None
        self._status_task: asyncio.Task[None] | None = None

    # -- start and stop ---------------------------------------------------------------
    async def start(self) -> None:
        """Index the bus logs, open the replay bus and media plane, start the players
        (playing unless made `paused`). `ReplayError` when the bus does not work."""
        self.index = await asyncio.to_thread(BusIndex, self.source.bus_logs, self.gaps)
        lo, hi = self.source.start_ns, self.source.end_ns
        self.events = sorted({t for t in self.index.events if lo <= t <= hi}
                             | set(self.source.marks))
        self._marks = sorted({t for t in self.source.marks if lo <= t <= hi})
        self._alerts = [t for t in self.index.alerts if lo <= t <= hi]
        self._bus = BusClient(self.endpoints, source=SOURCE)
        pub: zmq.Socket[bytes] = self._bus.sync_ctx.socket(zmq.PUB)
        pub.setsockopt(zmq.LINGER, 0)
        pub.setsockopt(zmq.SNDHWM, 100_000)
        pub.connect(self.endpoints.pub)
        self._pub = pub
        await self._wait_for_bus()
        self.bus_player = BusPlayer(self.index, self.clock, self._send_recorded,
                                    self.max_bus_rate)
        for (camera, stream), segments in sorted(self.source.streams.items()):
            publisher = MediaPublisher(self._bus.sync_ctx, self.endpoints.media(camera, stream))
            self._publishers.append(publisher)
            self.video.append(VideoPlayer(camera, stream, segments, self.clock, publisher,
                                          self.gaps))
        runners = [("replay-bus", self.bus_player.run)] + [
            (f"replay-{v.name}", v.run) for v in self.video]
        for name, run in runners:
            thread = threading.Thread(target=self._guarded, args=(run,), name=name,
                                      daemon=True)
            self._threads.append(thread)
            thread.start()
        self._bus.serve(topics.REPLAY_SERVICE, self._handle)
        await self._wait_for_service()
        if not self._start_paused:
            self.clock.play()
        self._status_task = asyncio.create_task(self._status_loop(), name="replay-status")

    def _guarded(self, run: Any) -> None:
        try:
            run()
        except Exception:  # a player's bug ends its thread, not the replay; the log says
            log.exception("a replay player failed")

    async def _wait_for_bus(self) -> None:
        # A PUB socket's first messages are lost until the broker has subscribed to it:
        # send the status until our own subscription sees it.
        assert self._bus is not None
        sub = self._bus.subscribe(topics.REPLAY_STATUS)
        deadline = time.monotonic() + BUS_READY_S
        try:
            while True:
                self.publish_status()
                try:
                    async with asyncio.timeout(0.2):
                        await sub.recv()
                    return
                except TimeoutError:
                    if time.monotonic() > deadline:
                        raise ReplayError(f"the replay bus at {self.endpoints.pub} does not "
                                          f"pass messages (is its broker running?)") from None
        finally:
            sub.close()

    async def _wait_for_service(self) -> None:
        # The broker routes requests to `replay` once our registration reached it: until
        # then a control would be refused with "no service".
        assert self._bus is not None
        deadline = time.monotonic() + BUS_READY_S
        while True:
            try:
                await self._bus.request(topics.REPLAY_SERVICE, Ping(payload="ready?"), 1.0)
                return
            except RequestError:
                if time.monotonic() > deadline:
                    raise ReplayError("the replay bus does not route requests to 'replay' "
                                      "(is its broker running?)") from None
                await asyncio.sleep(0.05)

    async def stop(self) -> None:
        self.clock.stop()
        if self._status_task is not None:
            self._status_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._status_task
        for thread in self._threads:
            await asyncio.to_thread(thread.join, JOIN_S)
        with contextlib.suppress(zmq.ZMQError):
            self.publish_status()
        for publisher in self._publishers:
            publisher.close()
        if self._pub is not None:
            with self._send_lock:
                self._pub.close(linger=0)
        if self._bus is not None:
            await self._bus.close()

    # -- sending ----------------------------------------------------------------------
    def _send(self, frames: list[bytes]) -> None:
        with self._send_lock:
            assert self._pub is not None
            self._pub.send_multipart(frames)

    def _send_recorded(self, frames: list[bytes]) -> None:
        self._send(rewrite_stream_endpoint(frames, self.endpoints.media))

    def publish_status(self) -> ReplayStatus:
        status = self.status()
        self._seq += 1
        self._send(envelope.encode(topics.REPLAY_STATUS, status, SOURCE, self._seq, (),
                                   self._bus.epoch if self._bus is not None else 0))
        return status

    async def _status_loop(self) -> None:
        while True:
            self.publish_status()
            await asyncio.sleep(STATUS_EVERY_S)

    # -- what it says -------------------------------------------------------------------
    def status(self) -> ReplayStatus:
        c = self.clock.state()
        session = self.source.session
        state: ReplayStateName = "ended" if c.ended else "paused" if c.paused else "playing"
        return ReplayStatus(
            session_id=session.id if session else None,
            session_name=session.name if session else "",
            start_ns=self.source.start_ns, end_ns=self.source.end_ns,
            position_ns=c.position_ns, speed=c.speed, state=state,
            keyframes_only=c.speed > KEYFRAMES_ONLY_ABOVE,
            cameras=[v.name for v in self.video],
            bus_messages=self.bus_player.sent if self.bus_player else 0,
            video_units=sum(v.sent for v in self.video), seeks=self.seeks,
            gaps=[g.line() for g in self.gaps.all()],
            marks_ns=_some(self._marks), alerts_ns=_some(self._alerts))

    def summary(self) -> dict[str, Any]:
        c = self.clock.state()
        session = self.source.session
        bus = self.bus_player
        return {
            "session_id": session.id if session else None,
            "session_name": session.name if session else "",
            "start_ns": self.source.start_ns, "end_ns": self.source.end_ns,
            "position_ns": c.position_ns, "reached_end": c.ended, "speed": c.speed,
            "runtime_dir": str(self.endpoints.runtime_dir),
            "bus": {"files": len(self.index.files) if self.index else 0,
                    "messages": bus.sent if bus else 0,
                    "state_messages": bus.state_sent if bus else 0},
            "video": {v.name: {"units": v.sent, "keyframes": v.keyframes_sent,
                               "segments": len(v.segments)} for v in self.video},
            "marks": len(self.events), "seeks": self.seeks,
            "gaps": [g.json() for g in self.gaps.all()],
        }

    # -- controls -----------------------------------------------------------------------
    def seek(self, position_ns: int) -> None:
        self.seeks += 1
        self.clock.seek(position_ns)

    async def _handle(self, env: Envelope) -> Message:
        req = env.message
        if isinstance(req, Ping):
            return Reply(status="accepted", detail="replay here")
        if not isinstance(req, ReplayCommand):
            return Reply(status="error", detail=f"expected a replay.command request, got "
                                                f"{env.header.type}")
        problem = self.command(req)
        if problem is not None:
            return Reply(status="rejected", detail=problem)
        status = self.publish_status()
        return Reply(status="accepted", detail=f"{status.state} at {status.position_ns} "
                     f"x{status.speed:g}", data=status.to_body())

    def command(self, req: ReplayCommand) -> str | None:
        """Carry out a control; None when done, else why not (one sentence)."""
        action = req.action.strip().lower()
        clock = self.clock
        lo, hi = self.source.start_ns, self.source.end_ns
        if action == "play":
            if clock.state().ended:
                self.seek(lo)
            clock.play()
        elif action == "pause":
            clock.pause()
        elif action == "seek":
            if not lo <= req.time_ns <= hi:
                return (f"{req.time_ns} is outside the replay ({lo} to {hi}, wall-clock ns)")
            self.seek(req.time_ns)
        elif action in ("next_mark", "prev_mark"):
            pos = clock.position_ns
            found = (self._next_event(pos) if action == "next_mark"
                     else self._previous_event(pos - PREVIOUS_SLACK_NS))
            if found is None:
                return f"no mark or alert {'after' if action == 'next_mark' else 'before'} " \
                       f"the replay's position"
            self.seek(found)
        elif action == "speed":
            if not REPLAY_SPEED_MIN <= req.speed <= REPLAY_SPEED_MAX:
                return (f"speed {req.speed:g} is outside {REPLAY_SPEED_MIN:g} to "
                        f"{REPLAY_SPEED_MAX:g}")
            clock.set_speed(req.speed)
        elif action == "step":
            if req.seconds == 0:
                return "a step needs a number of seconds other than 0"
            clock.pause()
            self.seek(clock.position_ns + int(req.seconds * 1e9))
        else:
            return f"unknown action {req.action!r}: one of {', '.join(REPLAY_ACTIONS)}"
        return None

    def _next_event(self, pos: int) -> int | None:
        return next((t for t in self.events if t > pos), None)

    def _previous_event(self, pos: int) -> int | None:
        return next((t for t in reversed(self.events) if t < pos), None)


def _some(times: list[int]) -> list[int]:
    """At most REPLAY_EVENTS_MAX of `times`, evenly picked, first and last kept."""
    if len(times) <= REPLAY_EVENTS_MAX:
        return list(times)
    step = (len(times) - 1) / (REPLAY_EVENTS_MAX - 1)
    return [times[round(i * step)] for i in range(REPLAY_EVENTS_MAX)]
