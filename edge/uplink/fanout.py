"""One media subscription per camera stream, shared by every viewer of it.

A :class:`Fanout` reads a stream's access units once (from the camera's media
plane, or from a transcoder) and offers each to every viewer's :class:`Sink`.
Offering never waits: a sink is a bounded queue, and a viewer whose queue is
full has fallen behind; it loses what it holds and starts again at the next
keyframe, while every other viewer carries on untouched.

Fast start: the fanout keeps the current group of pictures
(:class:`~edge.media.gop.GopCache`, as the camera's publisher does), and a
viewer that joins a running stream gets it at once, marked *catch-up*; the
first viewer of a stream gets the publisher's own replay, recognised because
the camera received those units before we subscribed. Catch-up units are
sent as fast as they come and stamped as one instant (see
:mod:`edge.uplink.track`), so the browser decodes them to reach the present
instead of playing the past at its own pace.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from aiortc.mediastreams import MediaStreamError

from edge.media.gop import GopCache, KeyframeGate
from edge.media.wire import MediaFrame

log = logging.getLogger(__name__)

# Live units a viewer may have queued before it counts as fallen behind:
# a second at 30 fps. (Catch-up units do not count: a long GOP must fit.)
LIVE_BACKLOG = 30
# A live unit older than this when we read it means we fell behind (the media
# plane buffers seconds before it drops): skip to a fresh keyframe instead of
# sending every viewer old video late.
MAX_AGE_S = 1.0
RATE_WINDOW_S = 2.0


class FrameSource(Protocol):
    async def recv(self) -> MediaFrame: ...

    def close(self) -> None: ...


class SinkClosed(MediaStreamError):
    """The viewer's stream ended (the session closed)."""


@dataclass
class SinkStats:
    offered: int = 0
    queued: int = 0
    skipped: int = 0  # waiting for a keyframe
    dropped: int = 0  # thrown away when the viewer fell behind
    resyncs: int = 0


class Sink:
    """One viewer's queue: bounded, and it drops to the next keyframe rather than grow."""

    def __init__(self, live_backlog: int = LIVE_BACKLOG) -> None:
        self.live_backlog = live_backlog
        self._queue: deque[tuple[MediaFrame, bool]] = deque()
        self._live_queued = 0
        self._ready = asyncio.Event()
        self._gate = KeyframeGate()
        self.closed = False
        self.stats = SinkStats()

    def offer(self, frame: MediaFrame, catchup: bool = False) -> None:
        """Take a unit or drop it; never blocks, never raises."""
        if self.closed:
            return
        self.stats.offered += 1
        if not catchup and self._live_queued >= self.live_backlog:
            # The viewer's sender has not taken a second of video: it is stalled
            # or too slow. What it holds is stale; restart it at a keyframe.
            self.stats.dropped += len(self._queue)
            self.stats.resyncs += 1
            self._queue.clear()
            self._live_queued = 0
            self._gate.lose()
        if not self._gate.passes(frame.keyframe):
            self.stats.skipped += 1
            return
        self._queue.append((frame, catchup))
        if not catchup:
            self._live_queued += 1
        self.stats.queued += 1
        self._ready.set()

    def restart(self) -> None:
        """The source started over (camera restarted): wait for its first keyframe."""
        self.stats.dropped += len(self._queue)
        self._queue.clear()
        self._live_queued = 0
        self._gate.lose()

    async def get(self) -> tuple[MediaFrame, bool]:
        """The next (unit, catch-up) pair; SinkClosed once the sink is closed."""
        while not self._queue:
            if self.closed:
                raise SinkClosed("viewer stream closed")
            self._ready.clear()
            await self._ready.wait()
        if self.closed:
            raise SinkClosed("viewer stream closed")
        frame, catchup = self._queue.popleft()
        if not catchup:
            self._live_queued -= 1
        return frame, catchup

    async def wait_ready(self) -> None:
        """Until a unit is queued or the sink is closed (taking nothing)."""
        while not self._queue and not self.closed:
            self._ready.clear()
            await self._ready.wait()

    def __len__(self) -> int:
        return len(self._queue)

    def close(self) -> None:
        self.closed = True
        self._queue.clear()
        self._live_queued = 0
        self._ready.set()


class Fanout:
    """One stream (camera, profile) read once and offered to every sink."""

    def __init__(self, key: tuple[str, str], open_source: Callable[[], FrameSource],
                 on_idle: Callable[[Fanout], None] = lambda f: None) -> None:
        self.key = key
        self._open_source = open_source
        self._on_idle = on_idle
        self.sinks: set[Sink] = set()
        self.gop: GopCache[MediaFrame] = GopCache()
        self._task: asyncio.Task[None] | None = None
        self._source: FrameSource | None = None
        self._subscribed_ns = 0
        self._epoch: int | None = None
        self.frames = 0
        self.stale = 0
        # Open: the source starts at a keyframe; it closes when we fall behind.
        self._fresh = KeyframeGate(waiting=False)
        self.restarts = 0
        self.last_frame_mono: float | None = None
        # The last live unit (not the publisher's replay, not late): the media
        # plane's own word that the camera is sending now.
        self.last_live_mono: float | None = None
        self._live_unit = asyncio.Event()
        self._rate: deque[tuple[float, int]] = deque()
        self.error: str = ""

    # -- viewers -----------------------------------------------------------------------
    def add_sink(self, live_backlog: int = LIVE_BACKLOG) -> Sink:
        """A new viewer's sink, primed with the current GOP; starts reading if idle.

        Raises whatever opening the source raises (the session is then refused).
        """
        if self._task is None or self._task.done():
            self._start()
        sink = Sink(live_backlog)
        for frame in self.gop:
            sink.offer(frame, catchup=True)
        self.sinks.add(sink)
        return sink

    def _start(self) -> None:
        self.error = ""
        self._source = self._open_source()
        self._subscribed_ns = time.time_ns()
        self._task = asyncio.create_task(self._run(self._source),
                                         name=f"fanout-{self.key[0]}-{self.key[1]}")

    async def remove_sink(self, sink: Sink) -> None:
        sink.close()
        self.sinks.discard(sink)
        if not self.sinks:
            await self.stop()
            self._on_idle(self)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        # A task cancelled before it first ran never reached its own cleanup.
        source, self._source = self._source, None
        if source is not None:
            source.close()
        for sink in list(self.sinks):
            sink.close()
        self.gop.reset()

    # -- reading -----------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    @property
    def kbps(self) -> float:
        if len(self._rate) < 2:
            return 0.0
        span = self._rate[-1][0] - self._rate[0][0]
        return sum(n for _, n in list(self._rate)[1:]) * 8 / 1000 / span if span > 0 else 0.0

    @property
    def source_lost(self) -> int:
        """Units lost before they reached us (media-plane gaps, drops to a keyframe)."""
        stats = getattr(self._source, "stats", None)
        lost = getattr(self._source, "dropped", 0)
        if stats is not None:
            lost += getattr(stats, "missed", 0) + getattr(stats, "dropped_to_keyframe", 0)
        return int(lost)

    async def wait_live(self, timeout: float, fresh_s: float) -> bool:
        """True if a live unit came in the last `fresh_s` seconds or comes within `timeout`."""
        last = self.last_live_mono
        if last is not None and time.monotonic() - last < fresh_s:
            return True
        self._live_unit.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._live_unit.wait()
        return self._live_unit.is_set()

    def stalled_for(self) -> float | None:
        """Seconds since the last unit, or None while none has come yet."""
        if self.last_frame_mono is None:
            return None
        return time.monotonic() - self.last_frame_mono

    async def _run(self, source: FrameSource) -> None:
        try:
            while True:
                frame = await source.recv()
                self._deliver(frame)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # the viewers see "stream error", the log has the detail
            self.error = f"{type(e).__name__}: {e}"
            log.exception("stream %s/%s failed", *self.key)
        finally:
            source.close()
            self._source = None

    def _deliver(self, frame: MediaFrame) -> None:
        now = time.monotonic()
        if self._epoch is not None and frame.epoch != self._epoch:
            # The camera process restarted: its units continue a new stream.
            self.restarts += 1
            self.gop.reset()
            for sink in self.sinks:
                sink.restart()
        self._epoch = frame.epoch
        self.frames += 1
        self.last_frame_mono = now
        # The publisher replays its cached GOP on subscription: units the camera
        # received before we subscribed are history, not live.
        catchup = frame.received_ns < self._subscribed_ns
        if not catchup:
            late = time.time_ns() - frame.received_ns > MAX_AGE_S * 1e9
            if late and not self._fresh.waiting:
                self._fresh.lose()
                self.gop.reset()
            if late or not self._fresh.passes(frame.keyframe):
                self.stale += 1
                return
            self.last_live_mono = now
            self._live_unit.set()
        self._rate.append((now, len(frame.data)))
        while self._rate and now - self._rate[0][0] > RATE_WINDOW_S:
            self._rate.popleft()
        self.gop.add(frame, frame.keyframe)
        for sink in self.sinks:
            sink.offer(frame, catchup)
