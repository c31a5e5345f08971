"""The dashboard in a replay: the replay clock it reads ages by, and the controls it sends.

A replay vehicle (``edge replay``) says where its clock is on ``replay/status``
(:class:`~edge.bus.messages.ReplayStatus`, 4 Hz and on every change). Hearing
one puts the dashboard in replay mode: :class:`ReplayTime` is the clock of
:class:`~ui.state.DashboardState` from the start, and reads the wall clock until
then; from the first status on it reads the replay position, interpolated
between statuses (position + time since heard × speed, unless paused), so a
replayed camera that was live shows live however long ago it was recorded.
Bus liveness (the broker's heartbeat) stays on the wall clock
(:attr:`ReplayTime.wall`): the replay broker runs now, not then.

Replayed messages keep their original headers, so after a seek backwards a
subscriber's sequence memory takes them for replays of the broker's cache.
A status whose ``seeks`` counter moved raises :attr:`ReplayTime.forget`; the
bridge then subscribes afresh (see :mod:`ui.bridge`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from edge.bus.messages import REPLAY_SPEED_MAX, REPLAY_SPEED_MIN, ReplayCommand, ReplayStatus
from edge.bus.mirror import Clock

# The speeds [ and ] step through, within what the replay service accepts.
SPEEDS = tuple(s for s in (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0)
               if REPLAY_SPEED_MIN <= s <= REPLAY_SPEED_MAX)
SEEK_STEP_S = 10.0
STEP_S = 1.0


@dataclass(slots=True, frozen=True)
class Heard:
    status: ReplayStatus
    at: float  # our wall clock when it arrived


class ReplayTime:
    """The dashboard's clock: the wall clock, or the replay's once one is heard."""

    def __init__(self, wall: Clock = time.time) -> None:
        self.wall = wall
        self.heard: Heard | None = None
        self.rev = 0  # bumped by every status, for redrawing
        self.forget = False  # a seek happened: the sequence memory must go

    def __call__(self) -> float:
        heard = self.heard
        if heard is None:
            return self.wall()
        return self.position(heard, self.wall())

    @property
    def active(self) -> bool:
        return self.heard is not None

    @property
    def status(self) -> ReplayStatus | None:
        return None if self.heard is None else self.heard.status

    @staticmethod
    def position(heard: Heard, wall_now: float) -> float:
        s = heard.status
        pos = s.position_ns / 1e9
        if s.state == "playing":
            pos += max(0.0, wall_now - heard.at) * _speed(s.speed)
        if s.end_ns > 0:
            pos = min(pos, s.end_ns / 1e9)
        return pos

    def take(self, status: ReplayStatus) -> None:
        """A status from the bus, or the one a control's reply carried."""
        last = self.status
        if last is not None and status.seeks != last.seeks:
            self.forget = True
        self.heard = Heard(status, self.wall())
        self.rev += 1


def _speed(speed: object) -> float:
    if not isinstance(speed, int | float) or not REPLAY_SPEED_MIN <= speed <= REPLAY_SPEED_MAX:
        return 1.0
    return float(speed)


def speed_text(status: ReplayStatus) -> str:
    return f"×{_speed(status.speed):g}"


def next_speed(current: float, up: bool) -> float | None:
    """The next speed of :data:`SPEEDS` above (or below) `current`; None at the end."""
    if up:
        return next((s for s in SPEEDS if s > current + 1e-9), None)
    return next((s for s in reversed(SPEEDS) if s < current - 1e-9), None)


def control(status: ReplayStatus, now: float, key: str) -> ReplayCommand | str:
    """The request for a replay key (`play_pause`, `back`, `forward`, `slower`, `faster`,
    `next_mark`, `prev_mark`, `step`) at replay time `now`, or why there is none."""
    if key == "play_pause":
        return ReplayCommand(action="pause" if status.state == "playing" else "play")
    if key in ("back", "forward"):
        delta = SEEK_STEP_S if key == "forward" else -SEEK_STEP_S
        target = int((now + delta) * 1e9)
        return ReplayCommand(action="seek",
                             time_ns=max(status.start_ns, min(status.end_ns, target)))
    if key in ("slower", "faster"):
        speed = next_speed(_speed(status.speed), key == "faster")
        if speed is None:
            return f"already at {speed_text(status)}"
        return ReplayCommand(action="speed", speed=speed)
    if key in ("next_mark", "prev_mark"):
        return ReplayCommand(action=key)
    if key == "step":
        return ReplayCommand(action="step", seconds=STEP_S)
    return f"unknown replay control {key!r}"
