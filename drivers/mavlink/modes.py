"""Flight-mode names for ArduPilot and PX4, both ways.

ArduPilot puts one number per mode in HEARTBEAT.custom_mode and the table
depends on the vehicle (Copter, Plane, Rover, Sub, ...), which we infer from
HEARTBEAT.type as ArduPilot's own GCS code does. PX4 packs a main mode in
bits 16-23 and a sub mode in bits 24-31; we name them as PX4 and MAVROS do
(``POSCTL``, ``AUTO.LOITER``, ``AUTO.RTL``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from drivers.mavlink.dialect import mavlink

Family = Literal["copter", "plane", "rover", "sub", "tracker", "blimp"]

COPTER_MODES: dict[int, str] = {
    0: "STABILIZE",
    1: "ACRO",
    2: "ALT_HOLD",
    3: "AUTO",
    4: "GUIDED",
    5: "LOITER",
    6: "RTL",
    7: "CIRCLE",
    9: "LAND",
    11: "DRIFT",
    13: "SPORT",
    14: "FLIP",
    15: "AUTOTUNE",
    16: "POSHOLD",
    17: "BRAKE",
    18: "THROW",
    19: "AVOID_ADSB",
    20: "GUIDED_NOGPS",
    21: "SMART_RTL",
    22: "FLOWHOLD",
    23: "FOLLOW",
    24: "ZIGZAG",
    25: "SYSTEMID",
    26: "AUTOROTATE",
    27: "AUTO_RTL",
    28: "TURTLE",
}

PLANE_MODES: dict[int, str] = {
    0: "MANUAL",
    1: "CIRCLE",
    2: "STABILIZE",
    3: "TRAINING",
    4: "ACRO",
    5: "FBWA",
    6: "FBWB",
    7: "CRUISE",
    8: "AUTOTUNE",
    10: "AUTO",
    11: "RTL",
    12: "LOITER",
    13: "TAKEOFF",
    14: "AVOID_ADSB",
    15: "GUIDED",
    16: "INITIALISING",
    17: "QSTABILIZE",
    18: "QHOVER",
    19: "QLOITER",
    20: "QLAND",
    21: "QRTL",
    22: "QAUTOTUNE",
    23: "QACRO",
    24: "THERMAL",
    25: "LOITERALTQLAND",
    26: "AUTOLAND",
}

ROVER_MODES: dict[int, str] = {
    0: "MANUAL",
    1: "ACRO",
    3: "STEERING",
    4: "HOLD",
    5: "LOITER",
    6: "FOLLOW",
    7: "SIMPLE",
    8: "DOCK",
    9: "CIRCLE",
    10: "AUTO",
    11: "RTL",
    12: "SMART_RTL",
    15: "GUIDED",
    16: "INITIALISING",
}

SUB_MODES: dict[int, str] = {
    0: "STABILIZE",
    1: "ACRO",
    2: "ALT_HOLD",
    3: "AUTO",
    4: "GUIDED",
    7: "CIRCLE",
    9: "SURFACE",
    16: "POSHOLD",
    19: "MANUAL",
}

TRACKER_MODES: dict[int, str] = {
    0: "MANUAL",
    1: "STOP",
    2: "SCAN",
    4: "GUIDED",
    10: "AUTO",
    16: "INITIALISING",
}

BLIMP_MODES: dict[int, str] = {0: "LAND", 1: "MANUAL", 2: "VELOCITY", 3: "LOITER", 4: "RTL"}

ARDUPILOT_TABLES: dict[Family, dict[int, str]] = {
    "copter": COPTER_MODES,
    "plane": PLANE_MODES,
    "rover": ROVER_MODES,
    "sub": SUB_MODES,
    "tracker": TRACKER_MODES,
    "blimp": BLIMP_MODES,
}

_COPTER_TYPES = {
    mavlink.MAV_TYPE_QUADROTOR,
    mavlink.MAV_TYPE_HEXAROTOR,
    mavlink.MAV_TYPE_OCTOROTOR,
    mavlink.MAV_TYPE_TRICOPTER,
    mavlink.MAV_TYPE_HELICOPTER,
    mavlink.MAV_TYPE_COAXIAL,
    mavlink.MAV_TYPE_DODECAROTOR,
    mavlink.MAV_TYPE_DECAROTOR,
}
_PLANE_TYPES = {
    mavlink.MAV_TYPE_FIXED_WING,
    mavlink.MAV_TYPE_FLAPPING_WING,
    mavlink.MAV_TYPE_KITE,
    # quadplanes report their VTOL frame (VTOL_DUOROTOR .. VTOL_RESERVED5)
    *range(mavlink.MAV_TYPE_VTOL_DUOROTOR, mavlink.MAV_TYPE_VTOL_RESERVED5 + 1),
}
_ROVER_TYPES = {mavlink.MAV_TYPE_GROUND_ROVER, mavlink.MAV_TYPE_SURFACE_BOAT}


def ardupilot_family(mav_type: int) -> Family | None:
    """Which ArduPilot firmware a HEARTBEAT.type implies."""
    if mav_type in _COPTER_TYPES:
        return "copter"
    if mav_type in _PLANE_TYPES:
        return "plane"
    if mav_type in _ROVER_TYPES:
        return "rover"
    if mav_type == mavlink.MAV_TYPE_SUBMARINE:
        return "sub"
    if mav_type == mavlink.MAV_TYPE_ANTENNA_TRACKER:
        return "tracker"
    if mav_type == mavlink.MAV_TYPE_AIRSHIP:
        return "blimp"
    return None


# PX4: px4_custom_mode.h
PX4_MAIN_MODES: dict[int, str] = {
    1: "MANUAL",
    2: "ALTCTL",
    3: "POSCTL",
    4: "AUTO",
    5: "ACRO",
    6: "OFFBOARD",
    7: "STABILIZED",
    8: "RATTITUDE",
    9: "SIMPLE",
    10: "TERMINATION",
}
PX4_AUTO_SUB_MODES: dict[int, str] = {
    1: "READY",
    2: "TAKEOFF",
    3: "LOITER",
    4: "MISSION",
    5: "RTL",
    6: "LAND",
    8: "FOLLOW_TARGET",
    9: "PRECLAND",
    10: "VTOL_TAKEOFF",
}
PX4_POSCTL_SUB_MODES: dict[int, str] = {1: "ORBIT", 2: "SLOW"}
_PX4_MAIN_BY_NAME = {name: num for num, name in PX4_MAIN_MODES.items()}
_PX4_AUTO_BY_NAME = {name: num for num, name in PX4_AUTO_SUB_MODES.items()}
_PX4_POSCTL_BY_NAME = {name: num for num, name in PX4_POSCTL_SUB_MODES.items()}


def px4_mode_name(custom_mode: int) -> str:
    main = (custom_mode >> 16) & 0xFF
    sub = (custom_mode >> 24) & 0xFF
    main_name = PX4_MAIN_MODES.get(main, f"MAIN_{main}")
    if main == 4:
        return f"AUTO.{PX4_AUTO_SUB_MODES.get(sub, f'SUB_{sub}')}"
    if main == 3 and sub in PX4_POSCTL_SUB_MODES:
        return f"POSCTL.{PX4_POSCTL_SUB_MODES[sub]}"
    return main_name


@dataclass(frozen=True, slots=True)
class ModeRequest:
    """What MAV_CMD_DO_SET_MODE needs: param1 base mode, param2/param3."""

    base_mode: int
    param2: float
    param3: float = 0.0


def mode_name(autopilot: int, mav_type: int, custom_mode: int, base_mode: int = 0) -> str:
    """Human mode name from a HEARTBEAT; never raises."""
    if autopilot == mavlink.MAV_AUTOPILOT_PX4:
        return px4_mode_name(custom_mode)
    if autopilot == mavlink.MAV_AUTOPILOT_ARDUPILOTMEGA:
        family = ardupilot_family(mav_type)
        table = ARDUPILOT_TABLES.get(family) if family else None
        if table is not None:
            return table.get(custom_mode, f"MODE_{custom_mode}")
        return f"MODE_{custom_mode}"
    if base_mode & mavlink.MAV_MODE_FLAG_CUSTOM_MODE_ENABLED:
        return f"MODE_{custom_mode}"
    return "UNKNOWN"


def mode_request(autopilot: int, mav_type: int, name: str) -> ModeRequest:
    """DO_SET_MODE parameters for a mode name; ``KeyError`` for an unknown name.

    Accepts the names :func:`mode_name` produces, case-insensitively, and
    for PX4 also the bare sub-mode (``LOITER`` for ``AUTO.LOITER``).
    """
    wanted = name.strip().upper()
    custom = mavlink.MAV_MODE_FLAG_CUSTOM_MODE_ENABLED
    if autopilot == mavlink.MAV_AUTOPILOT_PX4:
        main_name, _, sub_name = wanted.partition(".")
        if not sub_name and main_name in _PX4_AUTO_BY_NAME:
            main_name, sub_name = "AUTO", main_name
        if main_name == "AUTO" and sub_name in _PX4_AUTO_BY_NAME:
            return ModeRequest(custom, 4, _PX4_AUTO_BY_NAME[sub_name])
        if main_name == "POSCTL" and sub_name in _PX4_POSCTL_BY_NAME:
            return ModeRequest(custom, 3, _PX4_POSCTL_BY_NAME[sub_name])
        if not sub_name and main_name in _PX4_MAIN_BY_NAME and main_name != "AUTO":
            return ModeRequest(custom, _PX4_MAIN_BY_NAME[main_name], 0)
        raise KeyError(f"PX4 has no mode {name!r}")
    if autopilot == mavlink.MAV_AUTOPILOT_ARDUPILOTMEGA:
        family = ardupilot_family(mav_type)
        table = ARDUPILOT_TABLES.get(family) if family else None
        if table is None:
            raise KeyError(f"no ArduPilot mode table for vehicle type {mav_type}")
        for number, mode in table.items():
            if mode == wanted:
                return ModeRequest(custom, number)
        raise KeyError(f"ArduPilot {family} has no mode {name!r}")
    raise KeyError(f"mode names are not known for autopilot {autopilot}")


def mode_number(family: Family, name: str) -> int:
    """ArduPilot custom_mode number for a name in one family's table."""
    wanted = name.strip().upper()
    for number, mode in ARDUPILOT_TABLES[family].items():
        if mode == wanted:
            return number
    raise KeyError(f"ArduPilot {family} has no mode {name!r}")


def available_modes(autopilot: int, mav_type: int) -> list[str]:
    """Mode names a user may choose for this vehicle (for a UI list)."""
    if autopilot == mavlink.MAV_AUTOPILOT_PX4:
        return [n for n in PX4_MAIN_MODES.values() if n != "AUTO"] + [
            f"AUTO.{n}" for n in PX4_AUTO_SUB_MODES.values()
        ]
    family = ardupilot_family(mav_type)
    if autopilot == mavlink.MAV_AUTOPILOT_ARDUPILOTMEGA and family is not None:
        return list(ARDUPILOT_TABLES[family].values())
    return []
