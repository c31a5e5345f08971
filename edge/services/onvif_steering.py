"""Steering an ONVIF camera: PTZ ver20 through `drivers.onvif.OnvifClient`.

The device is the one the camera's main stream comes from (`main = { onvif = ADDRESS,
profile = … }`), logged in to with the camera's `credentials`, and steered through the
profile that stream uses. The client connects, and the profile's PTZ capabilities are
read, at the first command (then kept): a camera nobody steers costs the device nothing.

- move: ContinuousMove at the given velocities (ONVIF's generic velocity space is
  -1..1, as ours); stop: Stop.
- zoom: RelativeMove of the step in the relative zoom space; a device with only
  continuous zoom gets a zoom pulse (`ZOOM_PULSE_S`) then its pan/tilt again or Stop; a
  device with neither has no zoom, and says so. A RelativeMove ends a ContinuousMove
  on many devices (and on our simulator), so a pan under way is asked for again.
- presets: ONVIF names presets by token, we by number: preset N is the device's preset
  whose token is "N" (many devices number them so), else the one named "N".
  `set_preset N` overwrites that one, or stores a new preset named "N".
- home: GotoHomePosition, if the PTZ node says it has a home.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from drivers.onvif.client import OnvifClient, Preset, PtzCapabilities, choose_profile
from drivers.onvif.errors import OnvifError
from edge.services.ptz_steering import ZOOM_PULSE_S, SteeringError

# Each ONVIF exchange: a steering key press should be answered within the bus's
# request timeout (3 s by default), not the client's default of 10 s.
DEVICE_TIMEOUT_S = 2.5
T = TypeVar("T")


class OnvifSteering:
    kind = "onvif"

    def __init__(self, camera_id: str, address: str, credentials: str | None, profile: str,
                 *, timeout: float = DEVICE_TIMEOUT_S) -> None:
        self.camera_id = camera_id
        self.address = address
        self.profile = profile
        self._credentials = credentials
        self._timeout = timeout
        self._client: OnvifClient | None = None
        self._token = ""
        self._caps: PtzCapabilities | None = None

    async def _do(self, call: Callable[[OnvifClient, str, PtzCapabilities], Awaitable[T]]) -> T:
        """`call(client, profile token, capabilities)`, connecting first if need be."""
        try:
            if self._client is None:
                client = OnvifClient(self.address, self._credentials, timeout=self._timeout)
                await client.connect()  # it lets go of its sessions itself if this fails
                self._client = client
            if self._caps is None:
                profile = choose_profile(await self._client.profiles(), self.profile)
                self._caps = await self._client.ptz_capabilities(profile)
                self._token = profile.token
            return await call(self._client, self._token, self._caps)
        except OnvifError as e:
            text = str(e)
            # choose_profile's lines do not name the device; the client's all do.
            if not text.startswith("ONVIF "):
                text = f"ONVIF {self.address}: {text}"
            raise SteeringError(text) from None

    def _refuse(self, why: str) -> SteeringError:
        return SteeringError(f"camera {self.camera_id} {why}")

    async def move(self, pan: float, tilt: float) -> None:
        async def call(c: OnvifClient, token: str, caps: PtzCapabilities) -> None:
            if caps.continuous_pan_tilt is None:
                raise self._refuse("cannot pan or tilt (its ONVIF PTZ has no continuous "
                                   "pan/tilt space)")
            await c.continuous_move(token, pan=pan, tilt=tilt)
        await self._do(call)

    async def stop(self) -> None:
        async def call(c: OnvifClient, token: str, caps: PtzCapabilities) -> None:
            await c.stop(token)
        await self._do(call)

    async def zoom(self, step: float, moving: tuple[float, float] | None) -> None:
        async def call(c: OnvifClient, token: str, caps: PtzCapabilities) -> None:
            if caps.relative_zoom is not None:
                await c.relative_zoom(token, step)
                if moving is not None:
                    await c.continuous_move(token, *moving)
            elif caps.continuous_zoom is not None:
                pan, tilt = moving or (0.0, 0.0)
                await c.continuous_move(token, pan, tilt, zoom=step)
                await asyncio.sleep(ZOOM_PULSE_S)
                if moving is not None:
                    await c.continuous_move(token, pan, tilt)
                else:
                    await c.stop(token, pan_tilt=False, zoom=True)
            else:
                raise self._refuse("has no zoom (its ONVIF PTZ offers no zoom space)")
        await self._do(call)

    async def _preset(self, c: OnvifClient, token: str, number: int) -> Preset | None:
        presets = await c.presets(token)
        wanted = str(number)
        return (next((p for p in presets if p.token == wanted), None)
                or next((p for p in presets if p.name == wanted), None))

    async def goto_preset(self, number: int) -> str:
        async def call(c: OnvifClient, token: str, caps: PtzCapabilities) -> str:
            preset = await self._preset(c, token, number)
            if preset is None:
                raise self._refuse(f"has no preset {number}")
            await c.goto_preset(token, preset.token)
            return ""
        return await self._do(call)

    async def set_preset(self, number: int) -> str:
        async def call(c: OnvifClient, token: str, caps: PtzCapabilities) -> str:
            preset = await self._preset(c, token, number)
            if preset is None:
                stored = await c.set_preset(token, name=str(number))
            else:  # keep its name: a device may refuse a rename, or rename it to its token
                stored = await c.set_preset(token, name=preset.name or str(number),
                                            token=preset.token)
            return f"ONVIF preset token {stored}"
        return await self._do(call)

    async def home(self) -> str:
        async def call(c: OnvifClient, token: str, caps: PtzCapabilities) -> str:
            if not caps.home_supported:
                raise self._refuse("has no home position (its ONVIF PTZ node says so)")
            await c.goto_home(token)
            return ""
        return await self._do(call)

    async def close(self) -> None:
        client, self._client, self._caps = self._client, None, None
        if client is not None:
            await client.close()
