"""The replay clock: one position in recorded time that every player follows.

The position is recorded wall-clock ns (the times the recorder stamped: a bus
message's log time, a video unit's receipt). While playing it advances with
the monotonic clock times `speed`; paused it stands; it never passes `end_ns`
(there it stands too, `ended`). A seek moves it and bumps `generation`: a
player that sees another generation stops what it was sending and starts
again from the new position. Changing speed or pausing keeps the generation
(what is queued stays valid, only its pacing changes) and wakes every waiter
so it recomputes its wait.

Thread-safe: the players run in threads of their own and wait here
(:meth:`ReplayClock.wait_until`); controls come from the event loop.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

# A waiter wakes at least this often even when nothing changed, to see `stopped`.
MAX_WAIT_S = 0.25


@dataclass(frozen=True, slots=True)
class ClockState:
    position_ns: int
    speed: float
    paused: bool
    ended: bool
    generation: int


class ReplayClock:
    def __init__(self, start_ns: int, end_ns: int, *, speed: float = 1.0,
                 paused: bool = False, monotonic: Callable[[], float] = time.monotonic
                 ) -> None:
        if end_ns < start_ns:
            raise ValueError("the replay ends before it starts")
        if not speed > 0:
            raise ValueError(f"speed must be positive, not {speed}")
        self.start_ns = start_ns
        self.end_ns = end_ns
        self._mono = monotonic
        self._cond = threading.Condition()
        self._anchor_pos = start_ns
        self._anchor_mono = monotonic()
        self._speed = speed
        self._paused = paused
        self._generation = 0
        self.stopped = False

    # -- reading ----------------------------------------------------------------------
    def _position(self) -> int:
        if self._paused:
            return self._anchor_pos
        ran = (self._mono() - self._anchor_mono) * self._speed
        return min(self.end_ns, self._anchor_pos + int(ran * 1e9))

    @property
    def position_ns(self) -> int:
        with self._cond:
            return self._position()

    @property
    def generation(self) -> int:
        with self._cond:
            return self._generation

    def state(self) -> ClockState:
        with self._cond:
            pos = self._position()
            return ClockState(pos, self._speed, self._paused, pos >= self.end_ns,
                              self._generation)

    # -- controls ---------------------------------------------------------------------
    def _rebase(self) -> None:
        # Called under the lock before a change: the position so far becomes the anchor.
        self._anchor_pos = self._position()
        self._anchor_mono = self._mono()

    def play(self) -> None:
        with self._cond:
            self._rebase()
            self._paused = False
            self._cond.notify_all()

    def pause(self) -> None:
        with self._cond:
            self._rebase()
            self._paused = True
            self._cond.notify_all()

    def set_speed(self, speed: float) -> None:
        if not speed > 0:
            raise ValueError(f"speed must be positive, not {speed}")
        with self._cond:
            self._rebase()
            self._speed = speed
            self._cond.notify_all()

    def seek(self, position_ns: int) -> int:
        """Move to `position_ns` (clamped to the replay's range); the new generation."""
        with self._cond:
            self._anchor_pos = max(self.start_ns, min(self.end_ns, position_ns))
            self._anchor_mono = self._mono()
            self._generation += 1
            self._cond.notify_all()
            return self._generation

    def stop(self) -> None:
        """Release every waiter for good (the replay is ending)."""
        with self._cond:
            self.stopped = True
            self._cond.notify_all()

    # -- waiting (player threads) -------------------------------------------------------
    def wait_until(self, target_ns: int, generation: int) -> bool:
        """Block until the position reaches `target_ns`: True then; False as soon as the
        generation is no longer `generation` (a seek) or the clock stopped."""
        with self._cond:
            while True:
                if self.stopped or self._generation != generation:
                    return False
                pos = self._position()
                if pos >= target_ns:
                    return True
                if self._paused or pos >= self.end_ns:
                    self._cond.wait(MAX_WAIT_S)
                    continue
                delay = (target_ns - pos) / 1e9 / self._speed
                self._cond.wait(min(delay, MAX_WAIT_S))

    def wait_change(self, generation: int, timeout: float = MAX_WAIT_S) -> bool:
        """Block until a seek (True) or `timeout`/stop (False): for a player with nothing
        left to send."""
        with self._cond:
            if self.stopped:
                return False
            if self._generation == generation:
                self._cond.wait(timeout)
            return self._generation != generation and not self.stopped
