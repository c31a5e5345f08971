"""Where a stream's access units come from, paced for each viewer.

`LoopSource` replays a pre-encoded loop: every viewer gets its own cursor, so a
viewer that falls behind (a slow TCP client) skips to the next keyframe on its
own and never delays anybody else.

`LiveSource` runs one encoder thread shared by all viewers, started when the
first viewer plays and stopped when the last one leaves.  Each viewer has a
small queue; a full queue drops frames until the next keyframe for that viewer
only.

`SteerableSource` is a PTZ camera's stream: the pre-encoded loop while the view
is home (so a PTZ camera nobody steers costs what a fixed one does), a
`LiveSource` rendering the viewport while it is not.  Each viewer switches at a
keyframe of the source it goes to (the live encoder's first picture is an IDR,
the loop restarts at one), so a decoder never sees a picture referring to the
other source's.  Away from home it costs a live encoder: rendering the world at
twice the frame size (four times the pixels), a crop and resize, and an
ultrafast encode: about 9 ms of one core per 1280x720 frame (6 of them the
rendering), a quarter of a core at 30 fps, and 3 ms at 640x360; only while the
view is away from home and somebody watches.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, replace
from typing import Protocol

from drivers.sim.camera.encoder import (
    EncodedLoop,
    EncoderSettings,
    LiveEncoder,
    ParameterSets,
    Renderer,
    probe_parameter_sets,
)
from drivers.sim.camera.loop_cache import get_loop
from drivers.sim.camera.rtp import Payload, packetize
from drivers.sim.camera.viewport import HOME, View, ViewportScene

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
    """`scene`, if given, makes each encoder thread's picture (default: the settings')."""

    def __init__(self, settings: EncoderSettings, params: ParameterSets, mtu: int,
                 scene: Callable[[], Renderer] | None = None) -> None:
        self.settings = settings
        self.params = params
        self._mtu = mtu
        self._scene = scene
        self._subscribers: set[_Subscriber] = set()
        self._thread: threading.Thread | None = None
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self._force_keyframe = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    async def create(cls, settings: EncoderSettings, mtu: int,
                     scene: Callable[[], Renderer] | None = None) -> LiveSource:
        params = await asyncio.to_thread(probe_parameter_sets, settings)
        return cls(settings, params, mtu, scene)

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
            encoder = LiveEncoder(self.settings, self._scene() if self._scene else None)
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


class SteerableSource:
    """The home view's loop while `view()` is home, the live viewport elsewhere."""

    def __init__(self, home: LoopSource, live: LiveSource, view: Callable[[], View]) -> None:
        self.settings = home.settings
        self.params = home.params
        self._home = home
        self._live = live
        self._view = view

    @classmethod
    async def create(cls, settings: EncoderSettings, seconds: float, mtu: int,
                     view: Callable[[], View], cancel: threading.Event | None = None,
                     ) -> SteerableSource:
        """`settings` must have `viewport` set: the loop is the home view of the same world."""
        home = await LoopSource.create(settings, seconds, mtu, cancel)
        width, height, fps = settings.width, settings.height, settings.fps

        def scene() -> Renderer:
            return ViewportScene(settings.name, width, height, fps, view)

        live = LiveSource(replace(settings, preset="ultrafast"), home.params, mtu, scene)
        return cls(home, live, view)

    def away(self) -> bool:
        return self._view() != HOME

    async def frames(self, viewer: Viewer) -> AsyncGenerator[Frame, None]:
        while True:
            away = self.away()
            frames = (self._live if away else self._home).frames(viewer)
            try:
                async for frame in frames:
                    if self.away() != away:
                        break
                    yield frame
            finally:
                await frames.aclose()

    def request_keyframe(self) -> None:
        self._home.request_keyframe()
        self._live.request_keyframe()

    async def close(self) -> None:
        await self._live.close()
        await self._home.close()
