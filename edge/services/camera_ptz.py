"""A camera's steering, in its camera service: `PtzCommand` in, the camera moved, told to all.

`camera@<id>` hands each `PtzCommand` to its :class:`PtzController`, which

- checks the request (the action, the ranges, who asks) and answers a one-line reason
  for anything wrong;
- steers through the camera's executor, chosen by its main stream's source kind:
  `onvif` (`onvif_steering.OnvifSteering`) or `gb28181` (`gb_steering.GbSteering`);
  any other camera cannot be steered, and every request is refused saying why;
- decides who may steer (`ptz_arbiter.Arbiter`: the commander first, the centre where
  `ptz.centre` allows and nobody else holds the camera; a hold lapses `ptz.hold_s`
  after its holder's last command, or at `release`);
- is the dead-man: a `move` lasts until `stop` or until no `move` came for
  `DEAD_MAN_S`, and then the controller stops the camera itself (a lost stop, a
  crashed console or a cut link must not leave a camera turning). A console repeats
  its move while the key is held: a repeat only pushes the deadline on, and the device
  hears of a move only when the direction or speed changes;
- publishes `PtzStatus` on `cam/<id>/control` (state) at start and on every change;
- tells everyone on `event/command` what it was asked and how it went, as the drone
  and gb28181 services do (a console's repeats of one request count once).

One device operation runs at a time (a lock): a dead-man stop never overtakes the move
it ends, and a takeover's stop comes before the new holder's command. Device failures
are the reply's one line and the status's `reason`; the camera's video never depends
on any of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import time
from typing import Literal

from edge.bus import topics
from edge.bus.client import BusClient
from edge.bus.messages import (
    PTZ_ACTIONS,
    PTZ_CONTROLLERS,
    CommandEvent,
    PtzCommand,
    PtzStatus,
    Reply,
)
from edge.config import CameraConfig, VehicleConfig
from edge.config.cameras import Gb28181SourceConfig, OnvifSourceConfig
from edge.services.gb_steering import GbSteering
from edge.services.ptz_arbiter import Arbiter, Hold
from edge.services.ptz_steering import Steering, SteeringError

# A move is stopped this long after the last one: a console repeats a held key's move
# well within it, and a lost stop leaves a camera turning no longer than this.
DEAD_MAN_S = 1.0
# The hold's end in the status moves with every command; it is published again only
# when it moved by this much, not at a console's repeat rate.
HELD_UNTIL_STEP_S = 1.0
# An identical request (same requester, same answer) within this time of the last is
# the same command repeated: it is told on event/command once.
REPEAT_WINDOW_S = 1.0
# At most this long on the way out for a camera that is moving to be told to stop.
CLOSE_STOP_S = 1.5
WHO_MAX = 64


def check_command(req: PtzCommand) -> str | None:
    """What is wrong with `req` (one line naming the field and its value), or None."""
    action, controller = req.action.strip().lower(), req.controller.strip().lower()
    if action not in PTZ_ACTIONS:
        return f"action {req.action[:40]!r}: expected one of {', '.join(PTZ_ACTIONS)}"
    if controller not in PTZ_CONTROLLERS:
        return (f"controller {req.controller[:40]!r}: expected one of "
                f"{', '.join(PTZ_CONTROLLERS)}")
    if len(req.who) > WHO_MAX or not req.who.isprintable():
        return f"who {req.who[:40]!r}: expected at most {WHO_MAX} printable characters"
    for name, value in (("pan", req.pan), ("tilt", req.tilt), ("zoom", req.zoom)):
        if not (math.isfinite(value) and -1.0 <= value <= 1.0):
            return f"{name} {value:g} is outside -1..1"
    if action == "move":
        if req.zoom:
            return (f"zoom {req.zoom:g} in a move: a move pans and tilts; zoom is an action "
                    "of its own")
        if not (req.pan or req.tilt):
            return "move with pan 0 and tilt 0: give a speed in -1..1 (`stop` stops)"
    if action == "zoom" and not req.zoom:
        return "zoom 0: give a step in -1..1 other than 0 (+ in, - out)"
    if action in ("preset", "set_preset") and not 1 <= req.preset <= 255:
        return f"preset {req.preset} is outside 1..255"
    return None


def describe(req: PtzCommand) -> str:
    """The command as the event log shows it: `ptz move pan 1 tilt 0`, `ptz preset 3`."""
    action = req.action.strip().lower()
    if action == "move":
        return f"ptz move pan {req.pan:.2g} tilt {req.tilt:.2g}"
    if action == "zoom":
        return f"ptz zoom {req.zoom:+.2g}"
    if action in ("preset", "set_preset"):
        return f"ptz {action} {req.preset}"
    return f"ptz {action}"[:40]


def steering_for(camera: CameraConfig, credentials: str | None, bus: BusClient,
                 config: VehicleConfig) -> Steering | str:
    """The executor for `camera`'s main source, or why it cannot be steered."""
    main = camera.streams["main"]
    if isinstance(main, OnvifSourceConfig):
        # The ONVIF client is imported only for an ONVIF camera (a small import, but the
        # camera processes of a demo all start at once).
        from edge.services.onvif_steering import OnvifSteering

        return OnvifSteering(camera.id, main.onvif, credentials, main.profile)
    if isinstance(main, Gb28181SourceConfig):
        return GbSteering(bus, main.device_id, main.channel_id,
                          device_timeout_s=config.gb28181.request_timeout_s)
    return (f"camera {camera.id} cannot be steered: its source is {main.kind} "
            "(steering needs onvif or gb28181)")


class PtzController:
    """One camera's steering: `start()`, `handle()` each `PtzCommand`, `close()`."""

    def __init__(self, camera: CameraConfig, steering: Steering | str, bus: BusClient,
                 log: logging.Logger, service: str) -> None:
        self.camera = camera
        self.steering = steering if not isinstance(steering, str) else None
        self.cannot = steering if isinstance(steering, str) else ""
        self.bus = bus
        self.log = log
        self.service = service  # our own bus name, for the events of what we did alone
        self.arbiter = Arbiter(camera.id, centre_allowed=camera.ptz.centre,
                               hold_s=camera.ptz.hold_s)
        self.reason = self.cannot
        self.last_action = ""
        self.motion: tuple[float, float] | None = None  # the pan/tilt under way
        self.deadline = 0.0  # monotonic: the dead-man's stop of `motion`
        self.dead_man_stops = 0
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._published: PtzStatus | None = None
        self._last_event: tuple[tuple[str, ...], float] | None = None

    # -- life ------------------------------------------------------------------------------

    def start(self) -> None:
        self.publish()
        if self.steering is not None:
            self._task = asyncio.create_task(self._watch(), name="ptz-dead-man")

    async def close(self) -> None:
        """Stop the watch, stop a camera that is moving (briefly), let go of the device."""
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self.steering is None:
            return
        try:
            async with asyncio.timeout(CLOSE_STOP_S), self._lock:
                if self.motion is not None:
                    await self._stop_motion("the camera service is stopping")
        except (TimeoutError, SteeringError) as e:
            self.log.warning("could not stop camera %s on the way out: %s", self.camera.id,
                             str(e) or f"no answer within {CLOSE_STOP_S:g} s")
        await self.steering.close()

    # -- requests --------------------------------------------------------------------------

    async def handle(self, req: PtzCommand, source: str) -> Reply:
        """Carry out `req` from bus client `source`; the reply, also told on event/command."""
        started = time.monotonic()
        who = req.who.strip() or source
        controller = req.controller.strip().lower()
        try:
            reply = await self._carry_out(req, controller, who)
        except SteeringError as e:
            reply = Reply(status="rejected", detail=str(e))
            self._set_reason(str(e))
        except Exception as e:  # a bug of ours: the caller gets a line, the log the traceback
            self.log.exception("PTZ %s on camera %s failed", req.action[:20], self.camera.id)
            reply = Reply(status="error", detail=f"internal error ({type(e).__name__}; see "
                                                 f"the log of {self.service})")
        reply.elapsed_ms = round((time.monotonic() - started) * 1000, 1)
        self._tell(req, source, controller, who, reply)
        return reply

    async def _carry_out(self, req: PtzCommand, controller: str, who: str) -> Reply:
        if self.steering is None:
            return Reply(status="rejected", detail=self.cannot)
        problem = check_command(req)
        if problem is not None:
            return Reply(status="rejected", detail=problem)
        action = req.action.strip().lower()
        async with self._lock:
            if self._closing:  # the device's client is closed, or about to be
                return Reply(status="rejected", detail=f"camera {self.camera.id}'s service "
                                                       "is stopping")
            now = time.monotonic()
            if action == "release":
                return await self._release(controller, who, now)
            refusal = self.arbiter.refusal(controller, who, now)
            if refusal is not None:
                return Reply(status="rejected", detail=refusal)
            displaced = self.arbiter.take(controller, who, now)
            if displaced is not None and self.motion is not None:
                # The centre was steering: its motion ends before the commander's begins.
                await self._stop_motion(f"the {controller} took over from {displaced.who}")
            self._wake.set()  # the hold's lapse is due at another time now
            detail = await self._execute(self.steering, action, req)
            self.publish()
            return Reply(status="accepted", detail=detail)

    async def _execute(self, steering: Steering, action: str, req: PtzCommand) -> str:
        detail = ""
        if action == "move":
            motion = (req.pan, req.tilt)
            if motion != self.motion:
                await steering.move(*motion)
                self.motion = motion
            self.deadline = time.monotonic() + DEAD_MAN_S
        elif action == "stop":
            # Sent even when we think it still: the camera may know better.
            await steering.stop()
            self.motion = None
        elif action == "zoom":
            await steering.zoom(req.zoom, self.motion)
        elif action == "preset":
            detail = await steering.goto_preset(req.preset)
            # The device ends a pan on its way to the preset, and a dead-man stop now
            # would halt it before it got there.
            self.motion = None
        elif action == "set_preset":
            detail = await steering.set_preset(req.preset)
        elif action == "home":
            detail = await steering.home()
            self.motion = None
        self.last_action = action
        self._set_reason("")
        return detail

    async def _release(self, controller: str, who: str, now: float) -> Reply:
        if not self.arbiter.holds(controller, who, now):
            hold = self.arbiter.current(now)
            held = "nobody held it" if hold is None else \
                f"the {hold.controller} ({hold.who}) holds it"
            return Reply(status="accepted", detail=f"camera {self.camera.id} was not held by "
                                                   f"the {controller} ({who}): {held}")
        if self.motion is not None:
            await self._stop_motion(f"released by {who}")
        self.arbiter.release()
        self._wake.set()
        self.last_action = "release"
        self.publish()
        return Reply(status="accepted")

    async def _stop_motion(self, why: str) -> None:
        """Stop the pan/tilt under way (the lock is held). Raises SteeringError."""
        assert self.steering is not None
        self.log.info("camera %s: stopping its motion: %s", self.camera.id, why)
        await self.steering.stop()
        self.motion = None
        self.last_action = "stop"
        self.publish()

    # -- the dead-man and the hold's lapse -------------------------------------------------

    async def _watch(self) -> None:
        # asyncio.timeout rather than wait_for, and a flag besides: on Python 3.11 wait_for
        # can swallow the cancel of close() when the event is set at the same moment.
        while not self._closing:
            self._wake.clear()
            due = [t for t in (self.deadline if self.motion is not None else None,
                               self.arbiter.hold.until if self.arbiter.hold else None)
                   if t is not None]
            timeout = max(0.0, min(due) - time.monotonic()) if due else None
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._wake.wait()
            async with self._lock:
                await self._expire(time.monotonic())

    async def _expire(self, now: float) -> None:
        lapsed = self.arbiter.lapse(now)
        if self.motion is not None and (now >= self.deadline or lapsed is not None):
            why = (f"no move for {DEAD_MAN_S:g} s" if now >= self.deadline
                   else "its holder's time is up")
            try:
                await self._stop_motion(why)
            except SteeringError as e:
                # Tried again a dead-man period later: the camera may be turning still.
                self.deadline = time.monotonic() + DEAD_MAN_S
                if self.reason != str(e):
                    self.log.warning("camera %s: the stop (%s) failed: %s", self.camera.id,
                                     why, e)
                self._set_reason(str(e))
                self._tell_own("stop", "rejected", f"{why}: {e}")
            else:
                self.dead_man_stops += 1
                self._tell_own("stop", "accepted", why)
        if lapsed is not None:
            self.log.info("camera %s: the %s (%s) no longer holds it: no command for %g s",
                          self.camera.id, lapsed.controller, lapsed.who, self.arbiter.hold_s)
            self.publish()

    # -- telling -----------------------------------------------------------------------------

    def _set_reason(self, reason: str) -> None:
        if reason != self.reason:
            self.reason = reason
            self.publish()

    def status(self) -> PtzStatus:
        hold: Hold | None = self.arbiter.hold
        msg = PtzStatus(camera_id=self.camera.id, kind=self.steering.kind if self.steering
                        else "", reason=self.reason, centre_allowed=self.arbiter.centre_allowed,
                        moving=self.motion is not None, last_action=self.last_action)
        if hold is not None:
            msg.holder, msg.holder_who = hold.controller, hold.who
            left = max(0.0, hold.until - time.monotonic())
            msg.held_until_ns = time.time_ns() + int(left * 1e9)
        return msg

    def publish(self) -> None:
        """PtzStatus, if anything but the hold's end changed, or that by a step or more."""
        msg = self.status()
        last = self._published
        if last is not None:
            moved = abs(msg.held_until_ns - last.held_until_ns) >= HELD_UNTIL_STEP_S * 1e9
            if not moved and dataclasses.replace(last, held_until_ns=msg.held_until_ns) == msg:
                return
        self._published = msg
        self.bus.publish(topics.cam_control(self.camera.id), msg)

    def _tell(self, req: PtzCommand, source: str, controller: str, who: str,
              reply: Reply) -> None:
        action = describe(req)
        who_line = f"{who[:WHO_MAX]} ({controller[:20]})"
        detail = f"{who_line}: {reply.detail}" if reply.detail else who_line
        key = (source, action, reply.status, detail)
        now = time.monotonic()
        repeated = self._last_event is not None and self._last_event[0] == key \
            and now - self._last_event[1] < REPEAT_WINDOW_S
        self._last_event = (key, now)
        if repeated:
            return
        if reply.status == "accepted":
            self.log.info("camera %s: %s by %s", self.camera.id, action, who_line)
        else:
            self.log.info("camera %s: %s by %s %s: %s", self.camera.id, action, who_line,
                          reply.status, reply.detail)
        self.bus.publish(topics.EVENT_COMMAND, CommandEvent(
            service=self.service, subject=self.camera.id, action=action, by=source,
            status=reply.status, detail=detail, elapsed_ms=reply.elapsed_ms))

    def _tell_own(self, action: str, status: Literal["accepted", "rejected"],
                  detail: str) -> None:
        """What the controller did by itself (the dead-man's stop)."""
        self.bus.publish(topics.EVENT_COMMAND, CommandEvent(
            service=self.service, subject=self.camera.id, action=f"ptz {action}",
            by=self.service, status=status, detail=detail))

