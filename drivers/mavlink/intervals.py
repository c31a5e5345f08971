"""The telemetry set we ask a vehicle for, and how often.

Rates match what a commander's dashboard needs and what a thin radio link can
carry (about 1.5 kB/s per vehicle). ArduPilot and PX4 both honour
MAV_CMD_SET_MESSAGE_INTERVAL. The request changes the vehicle's output on
that link for every listener, which is why the read-only probe sends only
these and nothing else.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

from drivers.mavlink.commands import CommandResult, SetMessageInterval
from drivers.mavlink.dialect import mavlink

#: message id -> rate in Hz
TELEMETRY_RATES_HZ: Mapping[int, float] = {
    mavlink.MAVLINK_MSG_ID_ATTITUDE: 10.0,
    mavlink.MAVLINK_MSG_ID_GLOBAL_POSITION_INT: 5.0,
    mavlink.MAVLINK_MSG_ID_VFR_HUD: 4.0,
    mavlink.MAVLINK_MSG_ID_SYS_STATUS: 2.0,
    mavlink.MAVLINK_MSG_ID_GPS_RAW_INT: 2.0,
    mavlink.MAVLINK_MSG_ID_BATTERY_STATUS: 1.0,
    mavlink.MAVLINK_MSG_ID_RADIO_STATUS: 1.0,
    mavlink.MAVLINK_MSG_ID_HOME_POSITION: 0.2,
    mavlink.MAVLINK_MSG_ID_GIMBAL_DEVICE_ATTITUDE_STATUS: 2.0,
}

RunCommand = Callable[[SetMessageInterval], Awaitable[CommandResult]]


async def request_telemetry_rates(
    run: RunCommand, rates: Mapping[int, float] = TELEMETRY_RATES_HZ
) -> dict[int, CommandResult]:
    """Ask for every rate in turn (not in parallel: one SET_MESSAGE_INTERVAL
    is in flight at a time per vehicle, and ArduPilot answers each quickly).
    """
    results: dict[int, CommandResult] = {}
    for msg_id, hz in rates.items():
        results[msg_id] = await run(SetMessageInterval(msg_id, hz))
    return results
