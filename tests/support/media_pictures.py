"""A camera's stream on the media plane, decoded in the test: what a PTZ move did to the picture.

`MediaPictures` subscribes to a stream's media endpoint as any consumer does
(`MediaSubscriber`, which starts at a keyframe and drops to the next one after a loss)
and decodes every unit with FFmpeg (PyAV) in a thread of its own, so the event loop that
hosts the services never waits on a decoder. `marker_x()` is where the simulators' ruler
block is in the newest picture (`drivers.sim.camera.viewport`).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import av
import numpy as np
import numpy.typing as npt
import zmq

from drivers.sim.camera.viewport import marker_x
from edge.media.subscriber import MediaSubscriber

Picture = npt.NDArray[np.uint8]


class MediaPictures:
    """Decodes `endpoint`'s units in a thread; `last` is the newest picture (BGR)."""

    def __init__(self, ctx: zmq.Context[zmq.Socket[bytes]], endpoint: str) -> None:
        self.endpoint = endpoint
        self.pictures = 0
        self.error: BaseException | None = None
        self._ctx = ctx
        self._lock = threading.Lock()
        self._last: Picture | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="media-pictures", daemon=True)

    def _run(self) -> None:
        # The socket is made, used and closed in this thread alone (ZeroMQ sockets are not
        # shared between threads).
        sub = MediaSubscriber(self._ctx, self.endpoint)
        decoder: av.VideoCodecContext | None = None
        try:
            while not self._stop.is_set():
                for unit in sub.take(0.2):
                    if decoder is None:
                        ctx = av.CodecContext.create("h264" if unit.codec == "h264" else "hevc",
                                                     "r")
                        assert isinstance(ctx, av.VideoCodecContext)
                        decoder = ctx
                    for frame in decoder.decode(av.Packet(unit.data)):
                        picture = np.asarray(frame.to_ndarray(format="bgr24"), dtype=np.uint8)
                        with self._lock:
                            self._last, self.pictures = picture, self.pictures + 1
        except BaseException as exc:  # reported to the test by `count()`
            self.error = exc
        finally:
            sub.close()

    def count(self) -> int:
        """Pictures decoded so far; raises if decoding failed."""
        if self.error is not None:
            raise AssertionError(f"decoding {self.endpoint} failed: {self.error!r}")
        return self.pictures

    @property
    def last(self) -> Picture | None:
        with self._lock:
            return self._last

    def marker_x(self) -> float | None:
        """Where the ruler's white block is in the newest picture (None: none yet, or the
        block is out of view)."""
        self.count()
        last = self.last
        return None if last is None else marker_x(last)


@asynccontextmanager
async def media_pictures(ctx: zmq.Context[zmq.Socket[bytes]],
                         endpoint: str) -> AsyncIterator[MediaPictures]:
    """A running `MediaPictures`; on the way out its thread is stopped and joined."""
    pictures = MediaPictures(ctx, endpoint)
    pictures._thread.start()
    try:
        yield pictures
    finally:
        pictures._stop.set()
        await asyncio.to_thread(pictures._thread.join, 10)
