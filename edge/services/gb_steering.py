"""Steering a GB/T 28181 camera: a `GbPtzCommand` to the gb28181 service for each step.

The service holds the SIP dialogue with the device and sends it a DeviceControl PTZCmd
(GB/T 28181-2016 A.3); it answers each request with a `Reply` within the device's
answer time (`[gb28181] request_timeout_s`), which bounds our wait, plus the bus's
round trip.

- move: PTZCmd directions are on or off, with one speed 1..255 (`GbPtzCommand`
  applies it to pan and tilt): the direction is each axis's sign, the speed the larger
  of the two magnitudes. stop: the stop code.
- zoom: PTZCmd can only zoom until stopped, so a relative step is a zoom move for
  `ZOOM_PULSE_S` at a speed from the step's size, then a stop (or the pan/tilt under
  way, sent again without the zoom).
- presets: preset_call and preset_set with the number (A.3.4).
- home: GB/T 28181-2016 has no "go home now". Its HomePosition control (A.2.3,
  看守位) configures a guard position, a preset the device returns to by itself after
  ResetTime idle seconds, which is how the platforms we looked at (wvp-GB28181-pro's
  `/api/device/control/home_position`) use it; it does not move the camera now. So
  home calls preset 1, the preset devices and installers conventionally make the
  guard position, and the reply says so.
"""

from __future__ import annotations

import asyncio

from edge.bus import topics
from edge.bus.client import BusClient, RequestError
from edge.bus.messages import GbPtzCommand, Reply
from edge.services.ptz_steering import ZOOM_PULSE_S, SteeringError, sign

HOME_PRESET = 1
# Beyond the service's own wait for the device: the bus round trip and its work.
REPLY_MARGIN_S = 2.0


def gb_speed(magnitude: float) -> int:
    """A speed in -1..1's magnitude as PTZCmd's 1..255 (never 0: that would not move)."""
    return max(1, min(255, round(abs(magnitude) * 255)))


class GbSteering:
    kind = "gb28181"

    def __init__(self, bus: BusClient, device_id: str, channel_id: str, *,
                 device_timeout_s: float) -> None:
        self.bus = bus
        self.device_id = device_id
        self.channel_id = channel_id
        self.timeout_s = device_timeout_s + REPLY_MARGIN_S

    async def _send(self, action: str, *, pan: int = 0, tilt: int = 0, zoom: int = 0,
                    speed: int = 128, preset: int = 0) -> None:
        request = GbPtzCommand(device_id=self.device_id, channel_id=self.channel_id,
                               action=action, pan=pan, tilt=tilt, zoom=zoom, speed=speed,
                               preset=preset)
        try:
            env = await self.bus.request(topics.GB28181_SERVICE, request, timeout=self.timeout_s)
        except RequestError as e:  # no such service, or its timeout
            raise SteeringError(f"{topics.GB28181_SERVICE} service: {e}") from None
        reply = env.message
        if not isinstance(reply, Reply):
            raise SteeringError(f"{topics.GB28181_SERVICE} service answered "
                                f"{env.header.type}, not a reply")
        if reply.status != "accepted":
            raise SteeringError(reply.detail or f"{topics.GB28181_SERVICE} service: "
                                                f"{reply.status}")

    async def move(self, pan: float, tilt: float) -> None:
        await self._send("move", pan=sign(pan), tilt=sign(tilt),
                         speed=gb_speed(max(abs(pan), abs(tilt))))

    async def stop(self) -> None:
        await self._send("stop")

    async def zoom(self, step: float, moving: tuple[float, float] | None) -> None:
        pan, tilt = moving or (0.0, 0.0)
        # One speed for all axes: a pan under way keeps its own; else the step's size.
        speed = gb_speed(max(abs(pan), abs(tilt)) if moving else step)
        await self._send("move", pan=sign(pan), tilt=sign(tilt), zoom=sign(step), speed=speed)
        try:
            await asyncio.sleep(ZOOM_PULSE_S)
        finally:  # a zoom left running would run to the end of the lens
            if moving is not None:
                await self.move(pan, tilt)
            else:
                await self.stop()

    async def goto_preset(self, number: int) -> str:
        await self._send("preset_call", preset=number)
        return ""

    async def set_preset(self, number: int) -> str:
        await self._send("preset_set", preset=number)
        return ""

    async def home(self) -> str:
        await self._send("preset_call", preset=HOME_PRESET)
        return (f"home is preset {HOME_PRESET} on a GB/T 28181 camera (the standard has no "
                "home command)")

    async def close(self) -> None:
        pass  # nothing of ours is open: the gb28181 service holds the device
