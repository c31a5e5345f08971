"""The simulated camera's PTZ: position, continuous motion, presets and home.

Positions are in ONVIF's generic spaces: pan and tilt -1..1, zoom 0..1. A
continuous move integrates its velocity (1 = `FULL_SPEED` of the range per second)
from the moment it was asked until Stop, the next move, or its timeout, as a real
dome does; relative and absolute moves, presets and home are reached at once. The
picture follows through `view()`, which the encoder thread reads every frame: the
motion is one immutable record replaced whole, so a reader never sees half of it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

from drivers.sim.camera.viewport import View

PAN_RANGE = (-1.0, 1.0)
TILT_RANGE = (-1.0, 1.0)
ZOOM_RANGE = (0.0, 1.0)
FULL_SPEED = 0.5  # generic units per second at velocity 1: four seconds end to end
MAX_ZOOM = 4.0  # the magnification at zoom 1
DEFAULT_TIMEOUT_S = 10.0
TIMEOUT_RANGE_S = (1.0, 60.0)
MAX_PRESETS = 32


def _clamp(value: float, bounds: tuple[float, float]) -> float:
    return max(bounds[0], min(bounds[1], value))


@dataclass(frozen=True, slots=True)
class Position:
    pan: float = 0.0
    tilt: float = 0.0
    zoom: float = 0.0

    def clamped(self) -> Position:
        return Position(_clamp(self.pan, PAN_RANGE), _clamp(self.tilt, TILT_RANGE),
                        _clamp(self.zoom, ZOOM_RANGE))

    def view(self) -> View:
        """Pan +-1 moves the window half a frame (to the world's edge at 1x); zoom 0..1
        magnifies 1x..`MAX_ZOOM`x."""
        return View(pan=self.pan / 2, tilt=self.tilt / 2,
                    zoom=1.0 + (MAX_ZOOM - 1.0) * self.zoom)


@dataclass(frozen=True, slots=True)
class _Motion:
    origin: Position
    pan_speed: float = 0.0
    tilt_speed: float = 0.0
    zoom_speed: float = 0.0
    since: float = 0.0
    until: float = 0.0

    def at(self, now: float) -> Position:
        elapsed = max(0.0, min(now, self.until) - self.since)
        return Position(self.origin.pan + self.pan_speed * FULL_SPEED * elapsed,
                        self.origin.tilt + self.tilt_speed * FULL_SPEED * elapsed,
                        self.origin.zoom + self.zoom_speed * FULL_SPEED * elapsed).clamped()

    def moving(self, now: float) -> tuple[bool, bool]:
        """(pan/tilt moving, zoom moving): has speed, time left, and is not at the limit."""
        if now >= self.until:
            return False, False
        here, later = self.at(now), self.at(min(self.until, now + 0.01))
        return ((here.pan, here.tilt) != (later.pan, later.tilt), here.zoom != later.zoom)


@dataclass(frozen=True, slots=True)
class Preset:
    token: str
    name: str
    position: Position


class PresetError(Exception):
    """A preset operation that the device refuses (the message names why)."""


class PtzState:
    def __init__(self) -> None:
        self._motion = _Motion(Position())
        self.home = Position()
        self.presets: dict[str, Preset] = {}
        self._next_preset = 1

    def position(self, now: float | None = None) -> Position:
        return self._motion.at(time.monotonic() if now is None else now)

    def view(self) -> View:
        """The viewport now (thread-safe; read by the encoder every frame)."""
        return self.position().view()

    def moving(self) -> tuple[bool, bool]:
        return self._motion.moving(time.monotonic())

    def continuous_move(self, pan: float | None, tilt: float | None, zoom: float | None,
                        timeout_s: float | None = None) -> None:
        """Move at these velocities (-1..1; None: that axis stops) until Stop or timeout."""
        now = time.monotonic()
        timeout = _clamp(DEFAULT_TIMEOUT_S if timeout_s is None else timeout_s,
                         TIMEOUT_RANGE_S)
        self._motion = _Motion(self.position(now), _clamp(pan or 0.0, (-1, 1)),
                               _clamp(tilt or 0.0, (-1, 1)), _clamp(zoom or 0.0, (-1, 1)),
                               since=now, until=now + timeout)

    def stop(self, pan_tilt: bool = True, zoom: bool = True) -> None:
        now = time.monotonic()
        motion = self._motion
        rest = _Motion(self.position(now), 0.0 if pan_tilt else motion.pan_speed,
                       0.0 if pan_tilt else motion.tilt_speed,
                       0.0 if zoom else motion.zoom_speed, since=now,
                       until=motion.until if motion.until > now else now)
        self._motion = rest

    def move_to(self, position: Position) -> None:
        now = time.monotonic()
        self._motion = _Motion(position.clamped(), since=now, until=now)

    def move_by(self, pan: float = 0.0, tilt: float = 0.0, zoom: float = 0.0) -> None:
        here = self.position()
        self.move_to(replace(here, pan=here.pan + pan, tilt=here.tilt + tilt,
                             zoom=here.zoom + zoom))

    def set_preset(self, name: str | None, token: str | None) -> str:
        """Store the current position; a new preset unless `token` names one. Its token."""
        if token is not None and token not in self.presets:
            raise PresetError(f"no preset {token!r}")
        if token is None:
            if len(self.presets) >= MAX_PRESETS:
                raise PresetError(f"all {MAX_PRESETS} presets are in use")
            token = f"preset_{self._next_preset}"
            self._next_preset += 1
        if name is not None and any(p.name == name and p.token != token
                                    for p in self.presets.values()):
            raise PresetError(f"a preset is already named {name!r}")
        self.presets[token] = Preset(token, name or token, self.position())
        return token

    def goto_preset(self, token: str) -> None:
        preset = self.presets.get(token)
        if preset is None:
            raise PresetError(f"no preset {token!r}")
        self.move_to(preset.position)

    def remove_preset(self, token: str) -> None:
        if self.presets.pop(token, None) is None:
            raise PresetError(f"no preset {token!r}")
