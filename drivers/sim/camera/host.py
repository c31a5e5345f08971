"""Several simulated cameras in one process (`edge sim cameras`, the demo's `sim-cameras`).

Each camera is the `SimCamera` that `edge sim camera` runs, with its ONVIF device when it
has an ONVIF port, on its own ports; they share the process's interpreter, PyAV and
OpenCV, the encoder's version probe and the loop cache's memory (`loop_cache.get_loop`:
a camera started again gets its loops back at once). `drivers.sim.device_host` keeps
them: a camera that cannot listen is one error line and is tried again while the others
serve.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from drivers.rtsp.annexb import Codec
from drivers.sim.camera.encoder import Profile
from drivers.sim.camera.server import SimCamera
from drivers.sim.device_host import DeviceError, DeviceHost, why

if TYPE_CHECKING:
    from drivers.sim.onvif import SimOnvifDevice

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CameraSpec:
    """One camera: what `edge sim camera`'s flags say of it. With `onvif_port` it is also
    an ONVIF PTZ device there; its RTSP then asks for the ONVIF user and password unless
    it has a `user` of its own, as a camera with one account does. `discovery_port`
    (None: none) is its WS-Discovery responder's."""

    name: str
    port: int
    codec: Codec = "h264"
    profile: Profile = "baseline"
    user: str | None = None
    password: str | None = None
    onvif_port: int | None = None
    onvif_user: str | None = None
    onvif_password: str | None = None
    discovery_port: int | None = None


class HostedCamera:
    """A `CameraSpec` as `DeviceHost` runs it; each start makes a fresh `SimCamera`."""

    def __init__(self, spec: CameraSpec, host: str = "127.0.0.1", **options: Any) -> None:
        self.spec = spec
        self.host = host
        self.options = options
        self.camera: SimCamera | None = None
        self.device: SimOnvifDevice | None = None

    @property
    def name(self) -> str:
        return f"camera {self.spec.name}"

    def _cannot_listen(self, port: int, exc: OSError, what: str = "") -> DeviceError:
        return DeviceError(f"{self.name}: cannot listen on {self.host}:{port}{what}: "
                           f"{why(exc)}")

    async def start(self) -> None:
        spec = self.spec
        options: dict[str, Any] = {"codec": spec.codec, "profile": spec.profile,
                                   **self.options}
        if spec.user is not None:
            options.update(user=spec.user, password=spec.password)
        elif spec.onvif_port is not None:
            options.update(user=spec.onvif_user, password=spec.onvif_password)
        ptz = None
        if spec.onvif_port is not None:
            # Here: aiohttp only for an ONVIF camera, and drivers.sim.onvif imports us.
            from drivers.sim.onvif import PtzState

            ptz = PtzState()
            options["view"] = ptz.view
        self.camera = SimCamera(spec.name, host=self.host, port=spec.port, **options)
        try:
            # Listen at once: clients get 503 + Retry-After until the loops are ready.
            await self.camera.start(wait=False)
        except OSError as e:
            raise self._cannot_listen(spec.port, e) from None
        if spec.onvif_port is not None and ptz is not None:
            from drivers.sim.onvif import SimOnvifDevice

            self.device = SimOnvifDevice(
                self.camera, ptz, port=spec.onvif_port, user=spec.onvif_user,
                password=spec.onvif_password, discovery_port=spec.discovery_port)
            try:
                await self.device.start()
            except OSError as e:
                raise self._cannot_listen(spec.onvif_port, e, " (ONVIF)") from None

    async def serve(self) -> None:
        assert self.camera is not None
        try:
            await self.camera.wait_ready()
        except Exception as e:
            raise DeviceError(f"{self.name}: cannot prepare its streams: "
                              f"{e or type(e).__name__}") from None
        if self.device is not None:
            log.info("sim camera %s ready, ONVIF at %s", self.spec.name, self.device.url())
        else:
            log.info("sim camera %s ready", self.spec.name)
        await asyncio.Event().wait()

    async def close(self) -> None:
        device, self.device = self.device, None
        camera, self.camera = self.camera, None
        if device is not None:
            await device.close()
        if camera is not None:
            await camera.close()


def camera_host(specs: Sequence[CameraSpec], host: str = "127.0.0.1",
                **options: Any) -> DeviceHost:
    """A `DeviceHost` of these cameras; `options` are `SimCamera`'s, for every camera."""
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"two cameras named the same: {', '.join(names)}")
    return DeviceHost([HostedCamera(s, host, **options) for s in specs])


async def run_sim_cameras(specs: Sequence[CameraSpec], host: str = "127.0.0.1",
                          **options: Any) -> None:
    """Serve these cameras until cancelled (the `edge sim cameras` entry point); raises
    `device_host.NoneStarted` when none can listen. Closes them all on the way out."""
    await camera_host(specs, host, **options).run()
