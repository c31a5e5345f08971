"""The clock a follower of a replay bus ages messages by: the replay's, not the wall's.

A replay vehicle (``edge replay``) says where its clock is on ``replay/status``
(:class:`~edge.bus.messages.ReplayStatus`, 4 Hz and on every change), and
republishes recorded messages with their original headers, stamped then. A
follower that judged ages by the wall clock would find every replayed camera
hours silent. :class:`ReplayTime` reads the wall clock until a status is heard,
then the replay position, interpolated between statuses (position + time since
heard × speed, unless paused). The dashboard (:mod:`ui.state`) and the uplink's
vehicle model (:mod:`edge.uplink.state`) both age by it.

Replayed messages keep their original sequence numbers too, so after a seek
backwards a subscriber's sequence memory takes them for replays. A status whose
``seeks`` counter moved raises :attr:`ReplayTime.forget`: the follower should
subscribe afresh (the broker's cache then hands it every state topic as of the
target).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from edge.bus.messages import REPLAY_SPEED_MAX, REPLAY_SPEED_MIN, ReplayStatus
from edge.bus.mirror import Clock


@dataclass(slots=True, frozen=True)
class Heard:
    status: ReplayStatus
    at: float  # our wall clock when it arrived


class ReplayTime:
    """A follower's clock: the wall clock, or the replay's once one is heard."""

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
            pos += max(0.0, wall_now - heard.at) * replay_speed(s.speed)
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


def replay_speed(speed: object) -> float:
    if not isinstance(speed, int | float) or not REPLAY_SPEED_MIN <= speed <= REPLAY_SPEED_MAX:
        return 1.0
    return float(speed)
