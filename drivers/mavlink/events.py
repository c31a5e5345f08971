"""Things that happen on a drone link, as plain immutable values.

The drone service turns these into alerts; nothing here knows about the bus.
``level`` is the alert level a commander would want: ``info``, ``warning``
or ``critical``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Literal

Level = Literal["info", "warning", "critical"]


def _now_ns() -> int:
    return time.time_ns()

@dataclass(frozen=True, slots=True, kw_only=True)
class LinkEvent:
    sysid: int
    wall_ns: int = field(default_factory=_now_ns)

    @property
    def kind(self) -> str:
        """Stable snake-case name, e.g. ``vehicle_lost``."""
        name = type(self).__name__
        return "".join("_" + c.lower() if c.isupper() else c for c in name).lstrip("_")

    @property
    def level(self) -> Level:
        return "info"


@dataclass(frozen=True, slots=True, kw_only=True)
class VehicleDiscovered(LinkEvent):
    autopilot: str
    vehicle_type: str


@dataclass(frozen=True, slots=True, kw_only=True)
class VehicleLost(LinkEvent):
    silent_s: float

    @property
    def level(self) -> Level:
        return "critical"


@dataclass(frozen=True, slots=True, kw_only=True)
class VehicleRegained(LinkEvent):
    lost_for_s: float

    @property
    def level(self) -> Level:
        return "warning"


@dataclass(frozen=True, slots=True, kw_only=True)
class StatusText(LinkEvent):
    compid: int
    #: MAV_SEVERITY without its prefix: EMERGENCY ... DEBUG
    severity: str
    text: str

    @property
    def level(self) -> Level:
        if self.severity in ("EMERGENCY", "ALERT", "CRITICAL"):
            return "critical"
        if self.severity in ("ERROR", "WARNING"):
            return "warning"
        return "info"


@dataclass(frozen=True, slots=True, kw_only=True)
class ModeChanged(LinkEvent):
    old: str
    new: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ArmedChanged(LinkEvent):
    armed: bool

    @property
    def level(self) -> Level:
        return "warning"


@dataclass(frozen=True, slots=True, kw_only=True)
class VideoStreamFound(LinkEvent):
    compid: int
    stream_id: int
    name: str
    uri: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SigningRefused(LinkEvent):
    """A command-class message without a valid signature was dropped."""

    compid: int
    message: str
    #: where it came from: ``drone`` or a router endpoint name
    source: str

    @property
    def level(self) -> Level:
        return "warning"

