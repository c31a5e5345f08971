"""The dashboard in a replay: the replay clock it reads ages by, and the controls it sends.

Hearing ``replay/status`` puts the dashboard in replay mode: the clock of
:class:`~ui.state.DashboardState` is a :class:`~edge.bus.replay_clock.ReplayTime`
from the start (the wall clock until a status arrives, the replay position
after), so a replayed camera that was live shows live however long ago it was
recorded. Bus liveness (the broker's heartbeat) stays on the wall clock
(:attr:`ReplayTime.wall`): the replay broker runs now, not then. After a seek
(:attr:`ReplayTime.forget`) the bridge subscribes afresh (see :mod:`ui.bridge`).
"""

from __future__ import annotations

from edge.bus.messages import REPLAY_SPEED_MAX, REPLAY_SPEED_MIN, ReplayCommand, ReplayStatus
from edge.bus.replay_clock import replay_speed

# The speeds [ and ] step through, within what the replay service accepts.
SPEEDS = tuple(s for s in (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0)
               if REPLAY_SPEED_MIN <= s <= REPLAY_SPEED_MAX)
SEEK_STEP_S = 10.0
STEP_S = 1.0


def speed_text(status: ReplayStatus) -> str:
    return f"×{replay_speed(status.speed):g}"


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
        speed = next_speed(replay_speed(status.speed), key == "faster")
        if speed is None:
            return f"already at {speed_text(status)}"
        return ReplayCommand(action="speed", speed=speed)
    if key in ("next_mark", "prev_mark"):
        return ReplayCommand(action=key)
    if key == "step":
        return ReplayCommand(action="step", seconds=STEP_S)
    return f"unknown replay control {key!r}"
