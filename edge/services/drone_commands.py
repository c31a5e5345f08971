"""Bus drone commands to driver commands, and driver answers to bus replies.

Pure functions, no I/O: the rules a commander depends on (what counts as a
bad parameter, how a vehicle's answer becomes a reply status) are tested
here without a link. There is no way to arm, disarm or take off: those
actions do not exist on the bus and the driver has no such commands.
"""

from __future__ import annotations

import math

from drivers.mavlink import (
    Command,
    CommandResult,
    CommandStatus,
    GoTo,
    Hold,
    Land,
    PointGimbal,
    ReturnToLaunch,
    SetMode,
)
from edge.bus.messages import DRONE_ACTIONS, DroneCommand, Reply, ReplyStatus

# The driver's own limits (GoTo, PointGimbal); checked here first so that the
# error names the bus field the caller filled in, not the driver's argument.
LAT_RANGE = (-90.0, 90.0)
LON_RANGE = (-180.0, 180.0)
ALT_RANGE = (-100.0, 10_000.0)
PITCH_RANGE = (-90.0, 90.0)
YAW_RANGE = (-180.0, 360.0)
SYSID_RANGE = (1, 255)

_STATUS: dict[CommandStatus, ReplyStatus] = {
    CommandStatus.ACCEPTED: "accepted",
    CommandStatus.REJECTED: "rejected",
    CommandStatus.TIMED_OUT: "timeout",
    CommandStatus.BUSY: "busy",
}


class BadCommand(ValueError):
    """A request that cannot become a vehicle command; the text names the field."""


def _number(name: str, value: float | None, limits: tuple[float, float], action: str) -> float:
    if value is None:
        raise BadCommand(f"{name}: required for {action}")
    lo, hi = limits
    if not math.isfinite(value) or not lo <= value <= hi:
        raise BadCommand(f"{name}: {value!r} is out of range {lo:g}..{hi:g}")
    return float(value)


def check_sysid(sysid: int) -> int:
    lo, hi = SYSID_RANGE
    if not lo <= sysid <= hi:
        raise BadCommand(f"sysid: {sysid} is not a vehicle's MAVLink system id ({lo}..{hi})")
    return sysid


def to_command(cmd: DroneCommand) -> Command:
    """The driver command a bus request asks for; :class:`BadCommand` if it cannot be built."""
    action = cmd.action.strip().lower()
    if action not in DRONE_ACTIONS:
        raise BadCommand(
            f"unknown action {cmd.action!r}; the actions are {', '.join(DRONE_ACTIONS)}")
    check_sysid(cmd.sysid)
    if action == "rtl":
        return ReturnToLaunch()
    if action == "hold":
        return Hold()
    if action == "land":
        return Land()
    if action == "set_mode":
        mode = cmd.mode.strip().upper()
        if not mode:
            raise BadCommand("mode: required for set_mode (e.g. LOITER)")
        return SetMode(mode)
    if action == "goto":
        lat = _number("lat", cmd.lat, LAT_RANGE, action)
        lon = _number("lon", cmd.lon, LON_RANGE, action)
        # Required: silently keeping the current altitude could fly into terrain.
        alt = _number("alt_m", cmd.alt_m, ALT_RANGE, action)
        return GoTo(lat, lon, alt)
    # gimbal
    pitch = _number("pitch_deg", cmd.pitch_deg, PITCH_RANGE, action)
    yaw = 0.0 if cmd.yaw_deg is None else _number("yaw_deg", cmd.yaw_deg, YAW_RANGE, action)
    return PointGimbal(pitch_deg=pitch, yaw_deg=yaw)


def to_reply(result: CommandResult, action: str, drone_id: str, elapsed_ms: float) -> Reply:
    """The bus reply for what the vehicle (or the command engine) said."""
    status = _STATUS[result.status]
    if result.result is not None:
        detail = result.result  # the vehicle's own word: MAV_RESULT_DENIED, ...
    elif result.status is CommandStatus.TIMED_OUT:
        tries = f"{result.attempts} attempt{'s' if result.attempts != 1 else ''}"
        detail = f"{result.detail or 'no answer'} for {result.mav_cmd} after {tries}"
    else:
        detail = result.detail or status
    if result.status is CommandStatus.REJECTED and result.attempts == 0:
        # Nothing was sent: the request itself was unusable for this vehicle
        # (a mode name its autopilot does not have, an unknown autopilot).
        status = "error"
        if action == "set_mode":
            detail = f"mode: {detail}"
    return Reply(status=status, detail=detail, elapsed_ms=round(elapsed_ms, 1),
                 data={"drone_id": drone_id, **result.to_dict()})
