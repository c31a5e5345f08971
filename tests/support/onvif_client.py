"""The simulated ONVIF camera for client-side tests, and a sink that decodes what it streams.

`onvif_camera()` starts a PTZ SimCamera and its ONVIF device (drivers/sim/onvif,
real HTTP on 127.0.0.1, WS-Discovery on a private UDP port on loopback) with a
user and password. `Pictures` is an RTSP source's sink that decodes, in the test
only, so that a test sees a PTZ command act on the picture.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import av
import numpy as np
import numpy.typing as npt

from drivers.sim.camera import SimCamera
from drivers.sim.camera.viewport import marker_span, marker_x
from drivers.sim.onvif import PtzState, SimOnvifDevice
from drivers.source import AccessUnit

USER, PASSWORD = "admin", "s3cret-pw"
CREDENTIALS = f"{USER}:{PASSWORD}"
SUB = (640, 360)


@dataclass
class OnvifCamera:
    camera: SimCamera
    ptz: PtzState
    device: SimOnvifDevice

    @property
    def address(self) -> str:
        """What an operator configures: the device service URL."""
        return self.device.url()


@asynccontextmanager
async def onvif_camera(name: str = "cam", *, discovery: bool = False,
                       rtsp_auth: bool = False) -> AsyncIterator[OnvifCamera]:
    """`rtsp_auth`: the RTSP streams want the same user and password as ONVIF."""
    ptz = PtzState()
    camera = SimCamera(name, view=ptz.view, sub=SUB, user=USER if rtsp_auth else None,
                       password=PASSWORD if rtsp_auth else None)
    await camera.start()
    device = SimOnvifDevice(camera, ptz, user=USER, password=PASSWORD,
                            discovery_port=0 if discovery else None,
                            discovery_interface="127.0.0.1")
    try:
        await device.start()
        yield OnvifCamera(camera, ptz, device)
    finally:
        await device.close()
        await camera.close()


class Pictures:
    """An RTSP source's sink: decodes each unit (in the source's thread); `last` is BGR."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._decoder: av.VideoCodecContext | None = None
        self.count = 0
        self.last: npt.NDArray[np.uint8] | None = None

    def __call__(self, au: AccessUnit) -> None:
        if self._decoder is None:
            if not au.keyframe:
                return
            ctx = av.CodecContext.create("h264" if au.codec == "h264" else "hevc", "r")
            assert isinstance(ctx, av.VideoCodecContext)
            self._decoder = ctx
        for frame in self._decoder.decode(av.Packet(au.data)):
            picture = np.asarray(frame.to_ndarray(format="bgr24"), dtype=np.uint8)
            with self._lock:
                self.last, self.count = picture, self.count + 1

    def marker_x(self) -> float | None:
        """Where the ruler's white block is in the newest picture (no tilt, no zoom)."""
        with self._lock:
            last = self.last
        return None if last is None else marker_x(last)

    def marker_width(self) -> float | None:
        """How wide the block is in the newest picture: a zoom widens it."""
        with self._lock:
            last = self.last
        span = None if last is None else marker_span(last)
        return None if span is None else span[1]
