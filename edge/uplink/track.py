"""The passthrough video track: access units to aiortc as encoded packets, never decoded.

aiortc's sender packetises whatever ``recv()`` returns: an ``av.Frame`` is
encoded first, an ``av.Packet`` is not (``H264Encoder.pack`` splits its
Annex-B NAL units into RTP payloads, STAP-A/FU-A, as they are). The packet's
``pts`` in ``time_base`` becomes the RTP timestamp, converted to 90 kHz.

Timestamps are ours, not the camera's, so that they are continuous for the
viewer whatever the camera does:

- they follow the camera's pts while it flows (the camera's own pacing, not
  our arrival jitter);
- catch-up units (the cached GOP a new viewer starts from) advance one tick
  each, so the viewer's jitter buffer treats them as one instant, decodes them
  all and shows the present, instead of scheduling a second of history and
  adding a second of latency for good;
- when the camera's pts jump (it reconnected, restarted, or sent none) they
  advance by the wall-clock time between the units instead.

Pacing: with a ``budget`` (the link's media budget, shared by every session
on the link: :mod:`edge.uplink.link_budget`), units leave no faster than it
allows. The camera's own stream is below it and passes untouched; the
catch-up GOP, which is there at once, would otherwise leave at line rate and
overflow a satellite modem's queue (a quarter of a second at 4 Mbit/s).
Paced, the first frame still leaves at once and the rest follow as fast as
the link takes them.

Switching streams in-band (:meth:`PassthroughTrack.switch_to`): the session
moves to the camera's other stream (main ↔ sub, when the link to the centre
changes) without renegotiating: the same track, so the same SSRC, payload
type and sequence numbers. The track keeps sending the old stream until the
new sink has its first unit, which is a keyframe with its parameter sets (a
sink starts at one: the fanout's GOP cache, or the publisher's replay), then
takes the new sink's units only. H.264 decoders take the new SPS at that
IDR. The timestamps stay continuous by the rules above: the new stream's
cached GOP is catch-up, and its first live unit follows by its own pts.

PLI and REMB do nothing here: we cannot make the camera send a keyframe or
change bitrate for one viewer. Recovery from a loss that NACK did not repair
waits for the camera's next keyframe (one GOP at most); bitrate is chosen by
the stream (main or sub).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import av
from aiortc.mediastreams import VIDEO_TIME_BASE, MediaStreamError, MediaStreamTrack

from edge.media.wire import MediaFrame
from edge.uplink.fanout import Sink
from edge.uplink.link_budget import LinkBudget

CLOCK = 90_000
MAX_PTS_STEP = 10 * CLOCK  # a bigger jump in the camera's pts is a discontinuity

# Called (old sink, new sink) once the track has moved to the new sink.
Switched = Callable[[Sink, Sink], None]


class PassthroughTrack(MediaStreamTrack):
    kind = "video"

    def __init__(self, sink: Sink, budget: LinkBudget | None = None) -> None:
        super().__init__()
        self.sink = sink
        self.budget = budget
        self.paced_s = 0.0  # time units were held back, in all
        self._ts: int | None = None
        self._last_pts: int | None = None
        self._last_epoch: int | None = None
        self._last_received_ns = 0
        self.sent = 0
        self.keyframes = 0
        self.bytes = 0
        self.first_sent_mono: float | None = None
        self.last_sent_mono: float | None = None
        # Camera receipt to hand-over to aiortc, live units only: the uplink's own share
        # of the latency (media plane, fanout, queue), for the sessions' stats.
        self.delays_ms: deque[float] = deque(maxlen=300)
        self._next: tuple[Sink, Switched] | None = None

    @property
    def switching(self) -> Sink | None:
        """The sink the track moves to at its first unit, if a switch is under way."""
        return self._next[0] if self._next is not None else None

    def switch_to(self, sink: Sink, switched: Switched) -> None:
        """Move to `sink` once it has a unit (a keyframe: a sink starts at one); until then
        the current sink's units go on. `switched(old, new)` is called when it happens.
        A switch under way is replaced (its sink is the caller's to close)."""
        self._next = (sink, switched)

    def cancel_switch(self) -> None:
        self._next = None

    async def _take(self) -> tuple[MediaFrame, bool]:
        while True:
            pending = self._next
            if pending is None:
                return await self.sink.get()
            new, switched = pending
            if len(new):
                old, self.sink, self._next = self.sink, new, None
                switched(old, new)
                continue
            if new.closed:
                self._next = None
                continue
            if len(self.sink) or self.sink.closed:
                return await self.sink.get()
            await _either(self.sink, new)

    async def recv(self) -> av.Packet[Any]:
        if self.readyState != "live":
            raise MediaStreamError
        frame, catchup = await self._take()
        if self.budget is not None:
            hold = self.budget.wait(len(frame.data) * 8)
            if hold > 0:
                self.paced_s += hold
                await asyncio.sleep(hold)
        packet = av.Packet(frame.data)
        packet.pts = packet.dts = self._stamp(frame, catchup)
        packet.time_base = VIDEO_TIME_BASE
        if not catchup:
            self.delays_ms.append((time.time_ns() - frame.received_ns) / 1e6)
        now = time.monotonic()
        if self.first_sent_mono is None:
            self.first_sent_mono = now
        self.last_sent_mono = now
        self.sent += 1
        self.keyframes += frame.keyframe
        self.bytes += len(frame.data)
        return packet

    def _stamp(self, frame: MediaFrame, catchup: bool) -> int:
        pts = None if frame.pts is None else int(frame.pts * frame.time_base * CLOCK)
        if self._ts is None:
            ts = 0
        elif catchup:
            ts = self._ts + 1
        else:
            step = None
            if pts is not None and self._last_pts is not None and frame.epoch == self._last_epoch:
                d = pts - self._last_pts
                if 0 < d <= MAX_PTS_STEP:
                    step = d
            if step is None:
                wall = (frame.received_ns - self._last_received_ns) * CLOCK // 1_000_000_000
                step = max(1, wall)
            ts = self._ts + step
        self._ts, self._last_pts, self._last_epoch = ts, pts, frame.epoch
        self._last_received_ns = frame.received_ns
        return ts

    def stop(self) -> None:
        super().stop()
        self.sink.close()
        if self._next is not None:
            self._next[0].close()


async def _either(a: Sink, b: Sink) -> None:
    """Until either sink has a unit (or is closed)."""
    waits = [asyncio.ensure_future(a.wait_ready()), asyncio.ensure_future(b.wait_ready())]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()
        for w in waits:
            with contextlib.suppress(asyncio.CancelledError):
                await w

