"""Where a stream's access units come from, paced for each viewer.

`LoopSource` replays a pre-encoded loop: every viewer gets its own cursor, so a
viewer that falls behind (a slow TCP client) skips to the next keyframe on its
own and never delays anybody else.

`LiveSource` runs one encoder thread shared by all viewers, started when the
first viewer plays and stopped when the last one leaves.  Each viewer has a
small queue; a full queue drops frames until the next keyframe for that viewer
only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Protocol

from drivers.sim.camera.encoder import (
    EncodedLoop,
    EncoderSettings,
    LiveEncoder,
    ParameterSets,
    probe_parameter_sets,
)
from drivers.sim.camera.loop_cache import get_loop
from drivers.sim.camera.rtp import Payload, packetize

log = logging.getLogger(__name__)

# A viewer this far behind its schedule is resynchronised at the next keyframe.
MAX_LAG_S = 0.3
LIVE_QUEUE_FRAMES = 15


@dataclass(frozen=True, slots=True)
class Frame:
    """One access unit ready to send: payloads plus its capture time."""

    payloads: list[Payload]
    keyframe: bool
    mono: float  # time.monotonic() (== loop.time()) at capture
    wall_ns: int


class Viewer(Protocol):
    """What a source needs to know about the session it feeds."""

    frames_dropped: int


class StreamSource(Protocol):
    settings: EncoderSettings
    params: ParameterSets

    def frames(self, viewer: Viewer) -> AsyncGenerator[Frame, None]: ...

    def request_keyframe(self) -> None:
        """The next frame every viewer gets is a keyframe (or the one after)."""

    async def close(self) -> None: ...


class LoopSource:
    def __init__(self, loop_data: EncodedLoop, mtu: int) -> None:
        self.settings = loop_data.settings
        self.params = loop_data.params
        self._loop = loop_data
        self._payloads = [packetize(self.settings.codec, au.nals, mtu) for au in loop_data.aus]
        self._epoch = time.monotonic()
        self._epoch_wall_ns = time.time_ns()
        self._renewals = 0  # keyframe requests so far; each viewer skips to a keyframe

    @classmethod
    async def create(
        cls,
        settings: EncoderSettings,
        seconds: float,
        mtu: int,
        cancel: threading.Event | None = None,
    ) -> LoopSource:
        """Fetch or encode the loop in a worker thread; `cancel` aborts an encode."""
        loop_data = await asyncio.to_thread(get_loop, settings, seconds, cancel)
        return await asyncio.to_thread(cls, loop_data, mtu)

    def _start_index(self, now: float) -> int:
        # Viewers that join together see the same part of the loop, like a camera.
        position = int((now - self._epoch) * self.settings.fps) % len(self._payloads)
        return max(k for k in self._loop.keyframe_indices if k <= position)

    async def frames(self, viewer: Viewer) -> AsyncGenerator[Frame, None]:
        aus = self._loop.aus
        count = len(aus)
        period = 1.0 / self.settings.fps
        loop = asyncio.get_running_loop()
        t = loop.time()
        index = self._start_index(t)
        renewals = self._renewals
        while True:
            if renewals != self._renewals:
                # The loop is encoded once: its next keyframe is the keyframe we
                # can give now (the picture skips ahead by less than a GOP).
                renewals = self._renewals
                while not aus[index].keyframe:
                    index = (index + 1) % count
            now = loop.time()
            if t > now:
                await asyncio.sleep(t - now)
            elif now - t > MAX_LAG_S:
                while not (aus[index].keyframe and t >= now - period):
                    index = (index + 1) % count
                    t += period
                    viewer.frames_dropped += 1
                continue
            wall_ns = self._epoch_wall_ns + int((t - self._epoch) * 1e9)
            yield Frame(self._payloads[index], aus[index].keyframe, t, wall_ns)
            index = (index + 1) % count
            t += period

    def request_keyframe(self) -> None:
        self._renewals += 1

    async def close(self) -> None:
        return None


class _Subscriber:
    def __init__(self, viewer: Viewer) -> None:
        self.viewer = viewer
        self.queue: asyncio.Queue[Frame] = asyncio.Queue(LIVE_QUEUE_FRAMES)
        self.waiting_for_keyframe = True


class LiveSource:
    def __init__(self, settings: EncoderSettings, params: ParameterSets, mtu: int) -> None:
        self.settings = settings
        self.params = params
        self._mtu = mtu
        self._subscribers: set[_Subscriber] = set()
        self._thread: threading.Thread | None = None
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self._force_keyframe = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    async def create(cls, settings: EncoderSettings, mtu: int) -> LiveSource:
        params = await asyncio.to_thread(probe_parameter_sets, settings)
        return cls(settings, params, mtu)

    async def frames(self, viewer: Viewer) -> AsyncGenerator[Frame, None]:
        sub = _Subscriber(viewer)
        self._subscribers.add(sub)
        self._force_keyframe.set()
        self._ensure_thread()
        try:
            while True:
                yield await sub.queue.get()
        finally:
            self._subscribers.discard(sub)
            if not self._subscribers:
                self._stop.set()

    def request_keyframe(self) -> None:
        self._force_keyframe.set()

    def _ensure_thread(self) -> None:
        if self._thread is not None and self._thread.is_alive() and not self._stop.is_set():
            return
        # A previous encoder still winding down has its own stop event and exits
        # within a frame; waiting for it here would block the event loop.
        self._stop = threading.Event()
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(
            target=self._run,
            args=(self._loop, self._stop),
            name=f"sim-live-{self.settings.name}",
            daemon=True,
        )
        self._thread.start()
        self._threads = [t for t in self._threads if t.is_alive()] + [self._thread]

    def _run(self, loop: asyncio.AbstractEventLoop, stop: threading.Event) -> None:
        try:
            encoder = LiveEncoder(self.settings)
        except Exception:
            log.exception("live encoder failed to open")
            return
        period = 1.0 / self.settings.fps
        next_t = time.monotonic()
        try:
            while not stop.is_set():
                mono, wall_ns = time.monotonic(), time.time_ns()
                force = self._force_keyframe.is_set()
                self._force_keyframe.clear()
                for au in encoder.encode_next(force):
                    frame = Frame(
                        packetize(self.settings.codec, au.nals, self._mtu),
                        au.keyframe,
                        mono,
                        wall_ns,
                    )
                    try:
                        loop.call_soon_threadsafe(self._publish, frame)
                    except RuntimeError:
                        return  # event loop closed
                next_t += period
                delay = next_t - time.monotonic()
                if delay > 0:
                    stop.wait(delay)
                elif delay < -1.0:
                    next_t = time.monotonic()  # too slow to catch up: drop the backlog
        finally:
            encoder.close()

    def _publish(self, frame: Frame) -> None:
        for sub in self._subscribers:
            if sub.waiting_for_keyframe and not frame.keyframe:
                sub.viewer.frames_dropped += 1
                continue
            try:
                sub.queue.put_nowait(frame)
                sub.waiting_for_keyframe = False
            except asyncio.QueueFull:
                sub.viewer.frames_dropped += 1
                sub.waiting_for_keyframe = True
                self._force_keyframe.set()

    async def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            with contextlib.suppress(RuntimeError):
                await asyncio.to_thread(thread.join, 2.0)
        self._threads.clear()
