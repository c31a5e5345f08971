"""How the simulated ArduCopter answers commands and requests.

Results follow ArduCopter 4.5's GCS_MAVLink handlers closely enough for a
ground station to behave as with a real vehicle: mode changes that ArduCopter
would refuse come back FAILED, LAND while disarmed is DENIED, DO_REPOSITION
only works as COMMAND_INT (COMMAND_INT_ONLY otherwise), unknown commands are
UNSUPPORTED.
"""

from __future__ import annotations

import math
from typing import Any

from drivers.mavlink.dialect import MAVLink, MAVLinkMessage, mavlink
from drivers.sim.drone.generator import TelemetryGenerator
from drivers.sim.drone.vehicle import SimVehicle

Reply = tuple[int, list[MAVLinkMessage]]

_GLOBAL_FRAMES_REL = {
    mavlink.MAV_FRAME_GLOBAL_RELATIVE_ALT,
    mavlink.MAV_FRAME_GLOBAL_RELATIVE_ALT_INT,
}
_GLOBAL_FRAMES_MSL = {mavlink.MAV_FRAME_GLOBAL, mavlink.MAV_FRAME_GLOBAL_INT}
FORCE_MAGIC = 21196


class SimAutopilot:
    def __init__(
        self, vehicle: SimVehicle, generator: TelemetryGenerator, encoder: MAVLink, sysid: int
    ) -> None:
        self.vehicle = vehicle
        self.generator = generator
        self.encoder = encoder
        self.params: dict[str, float] = {
            "SYSID_THISMAV": float(sysid),
            "FRAME_CLASS": 1.0,
            "RTL_ALT": vehicle.config.rtl_alt_m * 100,
            "WPNAV_SPEED": vehicle.config.cruise_mps * 100,
            "LAND_SPEED": 50.0,
            "BATT_CAPACITY": 5200.0,
            "MNT1_TYPE": 1.0,
        }

    # ------------------------------------------------------------------ commands

    def handle_command(self, cmd: Any, is_int: bool) -> Reply:
        v = self.vehicle
        c = cmd.command
        ok = mavlink.MAV_RESULT_ACCEPTED
        if c == mavlink.MAV_CMD_SET_MESSAGE_INTERVAL:
            done = self.generator.set_interval(int(cmd.param1), cmd.param2)
            return (ok if done else mavlink.MAV_RESULT_FAILED), []
        if c == mavlink.MAV_CMD_REQUEST_MESSAGE:
            msg = self.generator.build(int(cmd.param1))
            return (ok, [msg]) if msg is not None else (mavlink.MAV_RESULT_FAILED, [])
        if c == mavlink.MAV_CMD_REQUEST_AUTOPILOT_CAPABILITIES:
            return ok, [self.generator.autopilot_version()]
        if c == mavlink.MAV_CMD_NAV_RETURN_TO_LAUNCH:
            return (ok if v.set_mode("RTL") else mavlink.MAV_RESULT_FAILED), []
        if c == mavlink.MAV_CMD_NAV_LAND:
            if not v.armed:
                return mavlink.MAV_RESULT_DENIED, []
            return (ok if v.set_mode("LAND") else mavlink.MAV_RESULT_FAILED), []
        if c == mavlink.MAV_CMD_DO_SET_MODE:
            if not int(cmd.param1) & mavlink.MAV_MODE_FLAG_CUSTOM_MODE_ENABLED:
                return mavlink.MAV_RESULT_DENIED, []
            return (ok if v.set_mode_number(int(cmd.param2)) else mavlink.MAV_RESULT_FAILED), []
        if c == mavlink.MAV_CMD_DO_REPOSITION:
            return self._reposition(cmd, is_int), []
        if c in (mavlink.MAV_CMD_DO_GIMBAL_MANAGER_PITCHYAW, mavlink.MAV_CMD_DO_MOUNT_CONTROL):
            if c == mavlink.MAV_CMD_DO_GIMBAL_MANAGER_PITCHYAW:
                pitch, yaw = cmd.param1, cmd.param2
            else:
                pitch, yaw = cmd.param1, cmd.param3
            if math.isnan(pitch) or math.isnan(yaw):
                return mavlink.MAV_RESULT_DENIED, []
            v.point_gimbal(pitch, yaw)
            return ok, []
        if c == mavlink.MAV_CMD_COMPONENT_ARM_DISARM:
            if cmd.param1 >= 0.5:
                return (ok if v.arm() else mavlink.MAV_RESULT_FAILED), []
            forced = int(cmd.param2) == FORCE_MAGIC
            return (ok if v.disarm(force=forced) else mavlink.MAV_RESULT_FAILED), []
        if c == mavlink.MAV_CMD_NAV_TAKEOFF:
            return (
                ok if v.takeoff(cmd.param7 if not is_int else cmd.z) else mavlink.MAV_RESULT_FAILED
            ), []
        return mavlink.MAV_RESULT_UNSUPPORTED, []

    def _reposition(self, cmd: Any, is_int: bool) -> int:
        return int(self._reposition_result(cmd, is_int))

    def _reposition_result(self, cmd: Any, is_int: bool) -> Any:
        v = self.vehicle
        if not is_int:
            return mavlink.MAV_RESULT_COMMAND_INT_ONLY
        if not v.armed or v.landed:
            return mavlink.MAV_RESULT_DENIED
        if v.mode != "GUIDED" and not int(cmd.param2) & mavlink.MAV_DO_REPOSITION_FLAGS_CHANGE_MODE:
            return mavlink.MAV_RESULT_DENIED
        lat, lon = cmd.x * 1e-7, cmd.y * 1e-7
        if not (-90 <= lat <= 90 and -180 <= lon <= 180):
            return mavlink.MAV_RESULT_DENIED
        if cmd.frame in _GLOBAL_FRAMES_REL:
            alt = cmd.z
        elif cmd.frame in _GLOBAL_FRAMES_MSL:
            alt = cmd.z - v.home_alt_msl
        else:
            return mavlink.MAV_RESULT_DENIED
        if lat == 0 and lon == 0:  # "here": only the altitude changes
            lat, lon = v.lat, v.lon
        v.go_to(lat, lon, max(alt, 1.0))
        return mavlink.MAV_RESULT_ACCEPTED

    def handle_set_mode(self, msg: Any) -> int:
        """The legacy SET_MODE message (ArduPilot ACKs it with command = 11)."""
        if not msg.base_mode & mavlink.MAV_MODE_FLAG_CUSTOM_MODE_ENABLED:
            return int(mavlink.MAV_RESULT_DENIED)
        ok = self.vehicle.set_mode_number(msg.custom_mode)
        return int(mavlink.MAV_RESULT_ACCEPTED if ok else mavlink.MAV_RESULT_FAILED)

    # ------------------------------------------------------------------ GCS chatter

    def param_list(self) -> list[MAVLinkMessage]:
        count = len(self.params)
        return [
            self._param(name, value, i, count)
            for i, (name, value) in enumerate(self.params.items())
        ]

    def param_read(self, msg: Any) -> list[MAVLinkMessage]:
        names = list(self.params)
        name = (
            msg.param_id
            if msg.param_index < 0
            else (names[msg.param_index] if msg.param_index < len(names) else "")
        )
        if name not in self.params:
            return []
        return [self._param(name, self.params[name], names.index(name), len(names))]

    def param_set(self, msg: Any) -> list[MAVLinkMessage]:
        if msg.param_id not in self.params:
            return []
        self.params[msg.param_id] = msg.param_value
        names = list(self.params)
        return [self._param(msg.param_id, msg.param_value, names.index(msg.param_id), len(names))]

    def _param(self, name: str, value: float, index: int, count: int) -> MAVLinkMessage:
        return self.encoder.param_value_encode(
            name.encode(), value, mavlink.MAV_PARAM_TYPE_REAL32, count, index
        )

    def mission_count(self, msg: Any, gcs_sysid: int, gcs_compid: int) -> list[MAVLinkMessage]:
        # no mission stored: QGroundControl asks on connect and needs an answer
        return [
            self.encoder.mission_count_encode(
                gcs_sysid, gcs_compid, 0, getattr(msg, "mission_type", 0)
            )
        ]
