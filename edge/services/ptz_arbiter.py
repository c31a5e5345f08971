"""Who steers a camera: one holder at a time, the on-scene commander first.

- The commander (the dashboard) always takes control: from nobody, from the centre,
  from another of its own consoles. It is on scene and answers for the incident.
- The centre (its viewer page, through the uplink) only where the camera's config
  allows it (`ptz.centre`), and only while neither the commander nor another centre
  viewer holds the camera.
- A hold lapses `ptz.hold_s` after the holder's last command, so a console that went
  away does not keep the camera; `release` ends it at once.

Plain bookkeeping on a monotonic clock, with no I/O: the controller stops the camera
when a holder is displaced and publishes what changed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Hold:
    controller: str  # one of PTZ_CONTROLLERS
    who: str
    until: float  # monotonic s: when it lapses without another command


class Arbiter:
    def __init__(self, camera_id: str, *, centre_allowed: bool, hold_s: float) -> None:
        self.camera_id = camera_id
        self.centre_allowed = centre_allowed
        self.hold_s = hold_s
        self.hold: Hold | None = None

    def current(self, now: float) -> Hold | None:
        """The hold, unless it has lapsed (it is cleared by `lapse`)."""
        hold = self.hold
        return hold if hold is not None and now < hold.until else None

    def refusal(self, controller: str, who: str, now: float) -> str | None:
        """Why `controller`/`who` may not steer now; None if it may."""
        if controller == "commander":
            return None
        if not self.centre_allowed:
            return (f"the centre may not steer camera {self.camera_id} "
                    "(cameras.ptz.centre is false)")
        hold = self.current(now)
        if hold is None or (hold.controller == controller and hold.who == who):
            return None
        left = max(1, math.ceil(hold.until - now))
        return (f"camera {self.camera_id} is steered by the {hold.controller} ({hold.who}) "
                f"for {left} more s")

    def holds(self, controller: str, who: str, now: float) -> bool:
        """Whether `controller`/`who` holds the camera (any of the commander's consoles
        counts as the commander: it is one role, whichever console spoke last)."""
        hold = self.current(now)
        return hold is not None and hold.controller == controller and (
            controller == "commander" or hold.who == who)

    def take(self, controller: str, who: str, now: float) -> Hold | None:
        """`controller`/`who` holds the camera from now (it was allowed); the hold it
        displaced from another controller, if any."""
        before = self.current(now)
        self.hold = Hold(controller, who, now + self.hold_s)
        return before if before is not None and before.controller != controller else None

    def release(self) -> None:
        self.hold = None

    def lapse(self, now: float) -> Hold | None:
        """Clear a hold whose time is up; the hold that lapsed, if one did."""
        hold = self.hold
        if hold is not None and now >= hold.until:
            self.hold = None
            return hold
        return None
