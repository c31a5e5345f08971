"""Steering a camera from the keyboard: what each key asks, holding an arrow, sending in order.

A terminal says a key is held only by repeating it (every 30-50 ms once its
auto-repeat starts) and never says it was let go. So an arrow starts a move, or
turns it at once to another arrow's direction; while repeats keep coming the
move is sent again every :data:`RESEND_S` (the camera service stops a camera
whose move is not renewed within a second: a lost stop must not leave it
turning); :data:`RELEASE_S` without a repeat is taken as the release, and a stop
goes out. A terminal whose auto-repeat waits longer than that before its first
repeat stops the camera once in between: the hold then resumes at the first
repeat.

Requests to one camera go one at a time (:class:`Outbox`): the camera service
may answer them concurrently, and a stop overtaken by the move before it would
leave the camera turning until its dead-man stop. A move or stop waiting behind
the one in flight is replaced by a newer one (only the latest direction
matters); presets, home and zoom steps wait their turn.

Plain Python on an injected clock (no Textual): the camera's detail view
(:mod:`ui.screens.camera`) drives it from its keys and a timer.
"""

from __future__ import annotations

from collections import deque
from typing import Literal

from edge.bus.messages import PtzCommand, PtzStatus, Reply
from ui.format import clean, clock_text

# How fast an arrow turns the camera, of its top speed (-1..1 on each axis).
MOVE_SPEED = 0.5
# One `+` or `-`: a relative step of the zoom range (-1..1).
ZOOM_STEP = 0.2
# While an arrow is held: the move is renewed this often ...
RESEND_S = 0.25
# ... and this long without a repeat of the key is its release.
RELEASE_S = 0.3
# What waits behind the request in flight, at most: a held `+` repeats faster than a
# camera zooms, and steps beyond these would arrive long after the key was let go.
MAX_WAITING = 4
PRESETS = range(1, 10)  # the keys 1-9 (the bus takes 1..255)

Arrow = Literal["left", "right", "up", "down"]
ARROWS: dict[Arrow, tuple[float, float]] = {
    "left": (-1.0, 0.0), "right": (1.0, 0.0), "up": (0.0, 1.0), "down": (0.0, -1.0)}
# The key a US keyboard sends for shift+1 .. shift+9, as Textual names it.
SHIFTED_DIGITS = ("exclamation_mark", "at", "number_sign", "dollar_sign", "percent_sign",
                  "circumflex_accent", "ampersand", "asterisk", "left_parenthesis")
KIND_NAMES = {"onvif": "ONVIF", "gb28181": "GB/T 28181"}
CONTINUOUS = ("move", "stop")
DETAIL_MAX = 200


def move(arrow: Arrow, speed: float = MOVE_SPEED) -> PtzCommand:
    pan, tilt = ARROWS[arrow]
    return PtzCommand(action="move", pan=pan * speed, tilt=tilt * speed)


def stop() -> PtzCommand:
    return PtzCommand(action="stop")


def zoom(direction: int) -> PtzCommand:
    """One zoom step: in for a positive `direction`, out for a negative one."""
    return PtzCommand(action="zoom", zoom=ZOOM_STEP if direction > 0 else -ZOOM_STEP)


def go_to_preset(number: int) -> PtzCommand:
    return PtzCommand(action="preset", preset=number)


def set_preset(number: int) -> PtzCommand:
    return PtzCommand(action="set_preset", preset=number)


def home() -> PtzCommand:
    return PtzCommand(action="home")


def describe(command: PtzCommand) -> str:
    """The request in words, for a notification or the log: "pan right", "go to preset 3"."""
    action = command.action
    if action == "move":
        parts = [("pan right" if command.pan > 0 else "pan left") if command.pan else "",
                 ("tilt up" if command.tilt > 0 else "tilt down") if command.tilt else ""]
        return " and ".join(p for p in parts if p) or "move"
    if action == "zoom":
        return "zoom in" if command.zoom > 0 else "zoom out"
    if action == "preset":
        return f"go to preset {command.preset}"
    if action == "set_preset":
        return f"store preset {command.preset}"
    if action == "home":
        return "go home"
    if action == "release":
        return "give control back"
    return action


class ArrowHold:
    """One arrow key held, on the caller's clock (seconds).

    :meth:`press` for every arrow key event (the first and each repeat),
    :meth:`tick` often (every 50 ms does): each returns the request to send now,
    if any."""

    def __init__(self, resend_s: float = RESEND_S, release_s: float = RELEASE_S) -> None:
        self.resend_s = resend_s
        self.release_s = release_s
        self.arrow: Arrow | None = None  # the one held, None when none is
        self._key_at = 0.0  # its last press or repeat
        self._sent_at = 0.0  # its move's last sending

    @property
    def held(self) -> bool:
        return self.arrow is not None

    def press(self, arrow: Arrow, now: float) -> PtzCommand | None:
        """An arrow's press or repeat: a new or turned move at once; a repeat's move when
        it is due again."""
        self._key_at = now
        if arrow != self.arrow:
            self.arrow, self._sent_at = arrow, now
            return move(arrow)
        return self._renewal(now)

    def tick(self, now: float) -> PtzCommand | None:
        """The stop once the key is let go, or the move again when it is due."""
        if self.arrow is None:
            return None
        if now - self._key_at >= self.release_s:
            self.arrow = None
            return stop()
        return self._renewal(now)

    def let_go(self) -> PtzCommand | None:
        """Stop now if moving (another key, or the view closing, ends the hold)."""
        if self.arrow is None:
            return None
        self.arrow = None
        return stop()

    def _renewal(self, now: float) -> PtzCommand | None:
        if self.arrow is None or now - self._sent_at < self.resend_s:
            return None
        self._sent_at = now
        return move(self.arrow)


class Outbox:
    """Requests to one camera, one in flight at a time, in the order asked.

    :meth:`put` returns what to send now (None: it waits); when its reply comes,
    :meth:`done` returns the next to send. A move or stop waiting last is replaced
    by a newer move or stop; anything else waits its turn (at most
    :data:`MAX_WAITING`: beyond that a zoom step, preset or home is dropped, and
    :attr:`dropped` counts it)."""

    def __init__(self, max_waiting: int = MAX_WAITING) -> None:
        self.in_flight: PtzCommand | None = None
        self.waiting: deque[PtzCommand] = deque()
        self.max_waiting = max_waiting
        self.dropped = 0

    def put(self, command: PtzCommand) -> PtzCommand | None:
        if self.in_flight is None:
            self.in_flight = command
            return command
        if (self.waiting and self.waiting[-1].action in CONTINUOUS
                and command.action in CONTINUOUS):
            self.waiting[-1] = command
        elif len(self.waiting) < self.max_waiting or command.action in CONTINUOUS:
            # A stop is never dropped: it makes room by dropping the oldest waiting.
            if len(self.waiting) >= self.max_waiting:
                self.waiting.popleft()
                self.dropped += 1
            self.waiting.append(command)
        else:
            self.dropped += 1
        return None

    def done(self) -> PtzCommand | None:
        """The request in flight was answered: the next to send, if one waits."""
        self.in_flight = self.waiting.popleft() if self.waiting else None
        return self.in_flight

    def clear(self) -> None:
        """Forget what waits (the view closed; its final stop is sent on its own)."""
        self.waiting.clear()


def refusal(command: PtzCommand, reply: Reply) -> str | None:
    """The refusal in one line ("pan right: rejected: held by the centre"), or None if
    the request was carried out."""
    if reply.status == "accepted":
        return None
    detail = clean(reply.detail, DETAIL_MAX)
    return f"{describe(command)}: {clean(reply.status, 20)}" + (f": {detail}" if detail else "")


def control_text(status: PtzStatus | None, now: float, own_who: str = "") -> str:
    """Who steers the camera, in one line: how it is steered, who holds it and until
    when (wall clock `now`, seconds), whether it moves, whether the centre may steer.
    `own_who` is this dashboard's `who`: its own hold reads "you"."""
    if status is None:
        return "not heard yet"
    if not status.kind:
        why = clean(status.reason, DETAIL_MAX)
        return "cannot be steered" + (f": {why}" if why else "")
    kind = KIND_NAMES.get(status.kind, clean(status.kind, 20))
    until = status.held_until_ns / 1e9 if status.held_until_ns > 0 else None
    if not status.holder or until is not None and until <= now:
        held = "free"
    else:
        who = clean(status.holder_who, 60)
        whom = "you" if own_who and who == own_who else who
        held = f"held by {clean(status.holder, 20)}" + (f" ({whom})" if whom else "")
        if until is not None:
            held += f" until {clock_text(until)}"
    moving = "moving" if status.moving else "still"
    centre = "the centre may steer" if status.centre_allowed else "the centre may not steer"
    return f"{kind}, {held}, {moving}; {centre}"
