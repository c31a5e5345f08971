"""What the camera service's PTZ controller asks of a camera, whatever protocol steers it.

A :class:`Steering` is one camera's executor: `onvif_steering.OnvifSteering` (ONVIF
PTZ, straight to the device) or `gb_steering.GbSteering` (a `GbPtzCommand` to the
gb28181 service, which sends the device a PTZCmd). The controller
(`camera_ptz.PtzController`) does the rest: checking requests, who holds the camera,
the dead-man stop, status and events. It calls one executor method at a time.

Every failure is a :class:`SteeringError` whose `str()` is one line for the operator
(the device's own refusal, or why it could not be asked).
"""

from __future__ import annotations

from typing import Protocol

# A relative zoom step where the protocol has only "zoom until stop" (GB/T 28181, or an
# ONVIF device without a relative zoom space): a zoom move this long, then stop.
ZOOM_PULSE_S = 0.3


class SteeringError(Exception):
    """A PTZ operation the camera (or the service between us) refused or never answered."""


class Steering(Protocol):
    """One camera's PTZ. Speeds and steps are in -1..1, checked by the controller."""

    kind: str  # "onvif" | "gb28181": PtzStatus.kind

    async def move(self, pan: float, tilt: float) -> None:
        """Pan (+ right) and tilt (+ up) at these speeds until `stop` or the next move."""

    async def stop(self) -> None: ...

    async def zoom(self, step: float, moving: tuple[float, float] | None) -> None:
        """One relative step in (+) or out; `moving` is the pan/tilt under way, to go on."""

    async def goto_preset(self, number: int) -> str:
        """Go to preset `number` (1..255); a note for the reply, or ""."""

    async def set_preset(self, number: int) -> str:
        """Store the current position as preset `number`; a note for the reply, or ""."""

    async def home(self) -> str:
        """Go to the home position; a note for the reply (what home means here), or ""."""

    async def close(self) -> None: ...


def sign(value: float) -> int:
    return (value > 0) - (value < 0)
