"""Safe vehicle commands, each with an honest answer.

A command is sent as COMMAND_LONG (or COMMAND_INT where positions need full
precision) and is only "accepted" when the vehicle says MAV_RESULT_ACCEPTED
in a COMMAND_ACK for that command id, addressed to us. Missing acks are
retried (COMMAND_LONG's ``confirmation`` counts the retries, as the protocol
asks); MAV_RESULT_IN_PROGRESS stops the retries and extends the wait; one
command per MAVLink command id per vehicle is in flight at a time, a second
gets an immediate ``busy``.

Deliberately missing: arm, disarm, takeoff. Nothing in this module can
start motors or lift a vehicle off the ground.

Hold, per autopilot (what QGroundControl's "Pause" does, so a pilot used to
QGC sees the same behaviour):

* ArduCopter: BRAKE, which stops at once and holds position without stick
  input. (LOITER would also hold, but lets residual stick input drift it.)
* ArduPlane: LOITER (a plane cannot stop, it circles).
* ArduRover / boat: HOLD.
* ArduSub: POSHOLD.
* PX4: AUTO.LOITER.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar

from drivers.mavlink.dialect import MAVLink, MAVLinkMessage, enum_name, mavlink
from drivers.mavlink.modes import ardupilot_family, mode_request

NAN = float("nan")


class CommandStatus(StrEnum):
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    TIMED_OUT = "timed_out"
    BUSY = "busy"


@dataclass(frozen=True, slots=True)
class CommandResult:
    status: CommandStatus
    #: our name for the command, e.g. ``return_to_launch``
    command: str
    #: the MAVLink command used, e.g. ``MAV_CMD_NAV_RETURN_TO_LAUNCH`` (empty if none was sent)
    mav_cmd: str
    #: the vehicle's MAV_RESULT name when it answered, e.g. ``MAV_RESULT_DENIED``
    result: str | None
    elapsed_ms: float
    attempts: int
    detail: str = ""
    #: last progress (0..100) reported with MAV_RESULT_IN_PROGRESS
    progress: int | None = None

    @property
    def ok(self) -> bool:
        return self.status is CommandStatus.ACCEPTED

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": str(self.status),
            "command": self.command,
            "mav_cmd": self.mav_cmd,
            "result": self.result,
            "elapsed_ms": self.elapsed_ms,
            "attempts": self.attempts,
            "detail": self.detail,
            "progress": self.progress,
        }


@dataclass(frozen=True, slots=True)
class VehicleInfo:
    """What building a command needs to know about the target."""

    sysid: int
    autopilot: int | None
    mav_type: int | None
    autopilot_compid: int = 1


@dataclass(frozen=True, slots=True)
class CommandSpec:
    """One MAVLink command on the wire."""

    command: int
    params: tuple[float, float, float, float, float, float, float] = (0, 0, 0, 0, 0, 0, 0)
    #: send as COMMAND_INT; then params[4] and params[5] are degrees to scale by 1e7
    use_int: bool = False
    frame: int = mavlink.MAV_FRAME_GLOBAL
    #: None: the vehicle's autopilot component
    target_component: int | None = None
    #: tried when the vehicle answers MAV_RESULT_UNSUPPORTED
    fallback: CommandSpec | None = None

    @property
    def name(self) -> str:
        return enum_name("MAV_CMD", self.command)


class CommandError(ValueError):
    """The command cannot be built for this vehicle (unknown mode, no hold mode, ...)."""


@dataclass(frozen=True, slots=True)
class Command:
    """Base of every command the driver exposes."""

    name: ClassVar[str] = "command"

    def build(self, vehicle: VehicleInfo) -> CommandSpec:
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class ReturnToLaunch(Command):
    name: ClassVar[str] = "return_to_launch"

    def build(self, vehicle: VehicleInfo) -> CommandSpec:
        return CommandSpec(mavlink.MAV_CMD_NAV_RETURN_TO_LAUNCH)


@dataclass(frozen=True, slots=True)
class Land(Command):
    """Land where the vehicle is now (lat/lon 0 means "here")."""

    name: ClassVar[str] = "land"

    def build(self, vehicle: VehicleInfo) -> CommandSpec:
        return CommandSpec(mavlink.MAV_CMD_NAV_LAND, (0, 0, 0, NAN, 0, 0, 0))


def _set_mode_spec(vehicle: VehicleInfo, mode: str) -> CommandSpec:
    if vehicle.autopilot is None or vehicle.mav_type is None:
        raise CommandError(f"vehicle {vehicle.sysid}: no HEARTBEAT yet, mode names unknown")
    try:
        req = mode_request(vehicle.autopilot, vehicle.mav_type, mode)
    except KeyError as exc:
        raise CommandError(str(exc.args[0])) from None
    return CommandSpec(
        mavlink.MAV_CMD_DO_SET_MODE, (req.base_mode, req.param2, req.param3, 0, 0, 0, 0)
    )


def hold_mode(vehicle: VehicleInfo) -> str:
    """The mode :class:`Hold` switches to; see the module docstring."""
    if vehicle.autopilot is None or vehicle.mav_type is None:
        raise CommandError(f"vehicle {vehicle.sysid}: no HEARTBEAT yet, autopilot unknown")
    if vehicle.autopilot == mavlink.MAV_AUTOPILOT_PX4:
        return "AUTO.LOITER"
    if vehicle.autopilot == mavlink.MAV_AUTOPILOT_ARDUPILOTMEGA and vehicle.mav_type is not None:
        family = ardupilot_family(vehicle.mav_type)
        mode = {"copter": "BRAKE", "plane": "LOITER", "rover": "HOLD", "sub": "POSHOLD"}.get(
            family or ""
        )
        if mode is not None:
            return mode
    raise CommandError(f"vehicle {vehicle.sysid}: no hold mode known for this autopilot/type")


@dataclass(frozen=True, slots=True)
class Hold(Command):
    """Stop and hold position (mode per autopilot, see module docstring)."""

    name: ClassVar[str] = "hold"

    def build(self, vehicle: VehicleInfo) -> CommandSpec:
        return _set_mode_spec(vehicle, hold_mode(vehicle))


@dataclass(frozen=True, slots=True)
class SetMode(Command):
    mode: str
    name: ClassVar[str] = "set_mode"

    def build(self, vehicle: VehicleInfo) -> CommandSpec:
        return _set_mode_spec(vehicle, self.mode)


@dataclass(frozen=True, slots=True)
class GoTo(Command):
    """Fly to a point; altitude relative to home. MAV_CMD_DO_REPOSITION as COMMAND_INT.

    The change-mode flag is set, so ArduCopter switches to GUIDED by itself
    (without it, ArduCopter refuses outside GUIDED).
    """

    lat: float
    lon: float
    alt_rel_m: float
    groundspeed_mps: float | None = None
    name: ClassVar[str] = "go_to"

    def __post_init__(self) -> None:
        if not (-90.0 <= self.lat <= 90.0) or not (-180.0 <= self.lon <= 180.0):
            raise ValueError(f"go_to: position {self.lat},{self.lon} out of range")
        if not math.isfinite(self.alt_rel_m) or not -100.0 <= self.alt_rel_m <= 10_000.0:
            raise ValueError(f"go_to: altitude {self.alt_rel_m} m out of range")

    def build(self, vehicle: VehicleInfo) -> CommandSpec:
        speed = -1.0 if self.groundspeed_mps is None else self.groundspeed_mps
        flags = mavlink.MAV_DO_REPOSITION_FLAGS_CHANGE_MODE
        return CommandSpec(
            mavlink.MAV_CMD_DO_REPOSITION,
            (speed, flags, 0, NAN, self.lat, self.lon, self.alt_rel_m),
            use_int=True,
            frame=mavlink.MAV_FRAME_GLOBAL_RELATIVE_ALT,
        )


@dataclass(frozen=True, slots=True)
class PointGimbal(Command):
    """Point the primary gimbal: pitch (down is negative) and yaw in degrees.

    Uses the gimbal manager (MAV_CMD_DO_GIMBAL_MANAGER_PITCHYAW); a vehicle
    that answers UNSUPPORTED gets the older MAV_CMD_DO_MOUNT_CONTROL instead.
    ``yaw_earth_frame``: yaw relative to north rather than to the vehicle's nose.
    """

    pitch_deg: float
    yaw_deg: float
    yaw_earth_frame: bool = False
    name: ClassVar[str] = "point_gimbal"

    def __post_init__(self) -> None:
        if not -90.0 <= self.pitch_deg <= 90.0 or not -180.0 <= self.yaw_deg <= 360.0:
            raise ValueError(
                f"point_gimbal: pitch {self.pitch_deg} / yaw {self.yaw_deg} out of range"
            )

    def build(self, vehicle: VehicleInfo) -> CommandSpec:
        flags = mavlink.GIMBAL_MANAGER_FLAGS_YAW_LOCK if self.yaw_earth_frame else 0
        mount = CommandSpec(
            mavlink.MAV_CMD_DO_MOUNT_CONTROL,
            (self.pitch_deg, 0, self.yaw_deg, 0, 0, 0, mavlink.MAV_MOUNT_MODE_MAVLINK_TARGETING),
        )
        return CommandSpec(
            mavlink.MAV_CMD_DO_GIMBAL_MANAGER_PITCHYAW,
            (self.pitch_deg, self.yaw_deg, NAN, NAN, flags, 0, 0),
            fallback=mount,
        )


@dataclass(frozen=True, slots=True)
class RequestMessage(Command):
    """Ask a component to send one message now (MAV_CMD_REQUEST_MESSAGE)."""

    message_id: int
    param2: float = 0
    target_component: int | None = None
    name: ClassVar[str] = "request_message"

    def build(self, vehicle: VehicleInfo) -> CommandSpec:
        return CommandSpec(
            mavlink.MAV_CMD_REQUEST_MESSAGE,
            (self.message_id, self.param2, 0, 0, 0, 0, 0),
            target_component=self.target_component,
        )


@dataclass(frozen=True, slots=True)
class SetMessageInterval(Command):
    """MAV_CMD_SET_MESSAGE_INTERVAL: ``rate_hz`` > 0, 0 for default, < 0 to stop."""

    message_id: int
    rate_hz: float
    name: ClassVar[str] = "set_message_interval"

    def build(self, vehicle: VehicleInfo) -> CommandSpec:
        if self.rate_hz > 0:
            interval_us = 1e6 / self.rate_hz
        elif self.rate_hz == 0:
            interval_us = 0
        else:
            interval_us = -1
        return CommandSpec(
            mavlink.MAV_CMD_SET_MESSAGE_INTERVAL, (self.message_id, interval_us, 0, 0, 0, 0, 0)
        )


# --------------------------------------------------------------------------- engine


@dataclass(slots=True)
class _Pending:
    target_component: int
    acks: asyncio.Queue[Any] = field(default_factory=asyncio.Queue)


_STOPPED = object()


class CommandSender:
    """Sends commands and matches their COMMAND_ACKs; owned by one link.

    ``send`` packs and transmits a message with our identity. ACKs are fed in
    through :meth:`on_ack` by whoever parses the link.
    """

    def __init__(
        self,
        send: Callable[[MAVLinkMessage], None],
        encoder: MAVLink,
        *,
        timeout_s: float = 1.5,
        retries: int = 2,
        in_progress_timeout_s: float = 30.0,
    ) -> None:
        self._send = send
        self._encoder = encoder
        self.timeout_s = timeout_s
        self.retries = retries
        self.in_progress_timeout_s = in_progress_timeout_s
        self._pending: dict[tuple[int, int], _Pending] = {}
        self._stopped = False

    @property
    def source_system(self) -> int:
        return int(self._encoder.srcSystem)

    @property
    def source_component(self) -> int:
        return int(self._encoder.srcComponent)

    def in_flight(self, sysid: int) -> list[str]:
        return [enum_name("MAV_CMD", cmd) for (sid, cmd) in self._pending if sid == sysid]

    def on_ack(self, sysid: int, compid: int, ack: Any) -> bool:
        """Route a COMMAND_ACK to the command waiting for it; False if none was."""
        pending = self._pending.get((sysid, ack.command))
        if pending is None:
            return False
        # target fields are MAVLink 2 extensions; 0 means "not filled in"
        if ack.target_system not in (0, self.source_system):
            return False
        if ack.target_component not in (0, self.source_component):
            return False
        if pending.target_component not in (0, compid):
            return False
        pending.acks.put_nowait(ack)
        return True

    def stop(self) -> None:
        """Wake every waiting command; they, and later ones, end ``timed_out`` ("link stopped")."""
        self._stopped = True
        for pending in self._pending.values():
            pending.acks.put_nowait(_STOPPED)

    async def execute(
        self,
        command: Command,
        vehicle: VehicleInfo,
        *,
        timeout_s: float | None = None,
        retries: int | None = None,
    ) -> CommandResult:
        started = time.monotonic()
        try:
            spec = command.build(vehicle)
        except CommandError as exc:
            return CommandResult(CommandStatus.REJECTED, command.name, "", None, 0.0, 0, str(exc))
        result = await self._run(command.name, spec, vehicle, started, timeout_s, retries)
        if (
            spec.fallback is not None
            and result.status is CommandStatus.REJECTED
            and result.result == "MAV_RESULT_UNSUPPORTED"
        ):
            fallback = await self._run(
                command.name, spec.fallback, vehicle, started, timeout_s, retries
            )
            detail = f"{spec.name} unsupported, used {spec.fallback.name}"
            return CommandResult(
                fallback.status,
                fallback.command,
                fallback.mav_cmd,
                fallback.result,
                fallback.elapsed_ms,
                result.attempts + fallback.attempts,
                f"{detail}; {fallback.detail}" if fallback.detail else detail,
                fallback.progress,
            )
        return result

    async def _run(
        self,
        name: str,
        spec: CommandSpec,
        vehicle: VehicleInfo,
        started: float,
        timeout_s: float | None,
        retries: int | None,
    ) -> CommandResult:
        timeout = self.timeout_s if timeout_s is None else timeout_s
        tries = 1 + (self.retries if retries is None else retries)
        key = (vehicle.sysid, spec.command)

        progress: int | None = None
        attempts = 0

        def finish(status: CommandStatus, result: str | None = None,
                   detail: str = "") -> CommandResult:
            elapsed_ms = round((time.monotonic() - started) * 1000.0, 1)
            return CommandResult(status, name, spec.name, result, elapsed_ms, attempts, detail,
                                 progress)

        if self._stopped:
            return finish(CommandStatus.TIMED_OUT, detail="link stopped")
        if key in self._pending:
            return finish(CommandStatus.BUSY, detail=f"{spec.name} already in flight")
        target_component = (
            vehicle.autopilot_compid if spec.target_component is None else spec.target_component
        )
        pending = _Pending(target_component)
        self._pending[key] = pending
        try:
            in_progress = False
            for attempt in range(tries):
                attempts += 1
                self._send(self._message(spec, vehicle.sysid, target_component, attempt))
                deadline = time.monotonic() + timeout
                while True:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    try:
                        # asyncio.timeout, not wait_for: wait_for in 3.11 can swallow
                        # a cancellation that races with the ack arriving
                        async with asyncio.timeout(remaining):
                            ack = await pending.acks.get()
                    except TimeoutError:
                        break
                    if ack is _STOPPED:
                        return finish(CommandStatus.TIMED_OUT, detail="link stopped")
                    result_name = enum_name("MAV_RESULT", ack.result)
                    if ack.result == mavlink.MAV_RESULT_IN_PROGRESS:
                        in_progress = True
                        progress = ack.progress if ack.progress <= 100 else progress
                        deadline = time.monotonic() + self.in_progress_timeout_s
                        continue
                    accepted = ack.result == mavlink.MAV_RESULT_ACCEPTED
                    return finish(
                        CommandStatus.ACCEPTED if accepted else CommandStatus.REJECTED,
                        result_name,
                    )
                if in_progress:
                    # the vehicle is executing it; resending would restart it
                    break
            detail = "no final COMMAND_ACK after IN_PROGRESS" if in_progress else "no COMMAND_ACK"
            return finish(CommandStatus.TIMED_OUT, detail=detail)
        finally:
            if self._pending.get(key) is pending:
                del self._pending[key]

    def _message(self, spec: CommandSpec, sysid: int, compid: int, attempt: int) -> MAVLinkMessage:
        p = spec.params
        if spec.use_int:
            return self._encoder.command_int_encode(
                sysid,
                compid,
                spec.frame,
                spec.command,
                0,
                0,
                p[0],
                p[1],
                p[2],
                p[3],
                int(round(p[4] * 1e7)),
                int(round(p[5] * 1e7)),
                p[6],
            )
        return self._encoder.command_long_encode(
            sysid, compid, spec.command, min(attempt, 255), p[0], p[1], p[2], p[3], p[4], p[5], p[6]
        )
