"""The simulated autopilot's outgoing telemetry: which messages, how often.

Independent of sockets and of the wall clock: ``due(now_s)`` returns what
should go out at simulated time ``now_s``, so the same code feeds a live
link and the recorded byte streams of ``drivers.mavlink.bench``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping

from drivers.mavlink.dialect import MAVLink, MAVLinkMessage, mavlink
from drivers.sim.drone.vehicle import SimVehicle

#: ArduCopter-like default stream rates, in Hz
DEFAULT_RATES_HZ: Mapping[int, float] = {
    mavlink.MAVLINK_MSG_ID_HEARTBEAT: 1.0,
    mavlink.MAVLINK_MSG_ID_ATTITUDE: 10.0,
    mavlink.MAVLINK_MSG_ID_GLOBAL_POSITION_INT: 5.0,
    mavlink.MAVLINK_MSG_ID_VFR_HUD: 4.0,
    mavlink.MAVLINK_MSG_ID_SYS_STATUS: 2.0,
    mavlink.MAVLINK_MSG_ID_GPS_RAW_INT: 2.0,
    mavlink.MAVLINK_MSG_ID_BATTERY_STATUS: 1.0,
    mavlink.MAVLINK_MSG_ID_RADIO_STATUS: 1.0,
    mavlink.MAVLINK_MSG_ID_GIMBAL_DEVICE_ATTITUDE_STATUS: 2.0,
    mavlink.MAVLINK_MSG_ID_HOME_POSITION: 0.2,
}

#: firmware 4.5.7, official release
FLIGHT_SW_VERSION = (4 << 24) | (5 << 16) | (7 << 8) | 255
STATUSTEXT_LEN = 50
_CAPABILITIES = (
    mavlink.MAV_PROTOCOL_CAPABILITY_MAVLINK2
    | mavlink.MAV_PROTOCOL_CAPABILITY_MISSION_INT
    | mavlink.MAV_PROTOCOL_CAPABILITY_COMMAND_INT
    | mavlink.MAV_PROTOCOL_CAPABILITY_SET_POSITION_TARGET_GLOBAL_INT
    | mavlink.MAV_PROTOCOL_CAPABILITY_COMPASS_CALIBRATION
)
_SENSORS = (
    mavlink.MAV_SYS_STATUS_SENSOR_3D_GYRO
    | mavlink.MAV_SYS_STATUS_SENSOR_3D_ACCEL
    | mavlink.MAV_SYS_STATUS_SENSOR_3D_MAG
    | mavlink.MAV_SYS_STATUS_SENSOR_ABSOLUTE_PRESSURE
    | mavlink.MAV_SYS_STATUS_SENSOR_GPS
    | mavlink.MAV_SYS_STATUS_SENSOR_MOTOR_OUTPUTS
    | mavlink.MAV_SYS_STATUS_SENSOR_BATTERY
)
_GUIDED_MODES = {"GUIDED", "AUTO", "RTL", "LAND", "CIRCLE", "BRAKE", "SMART_RTL"}


def quaternion(roll: float, pitch: float, yaw: float) -> list[float]:
    """(w, x, y, z) from Euler angles in radians."""
    cr, sr = math.cos(roll / 2), math.sin(roll / 2)
    cp, sp = math.cos(pitch / 2), math.sin(pitch / 2)
    cy, sy = math.cos(yaw / 2), math.sin(yaw / 2)
    return [
        cr * cp * cy + sr * sp * sy,
        sr * cp * cy - cr * sp * sy,
        cr * sp * cy + sr * cp * sy,
        cr * cp * sy - sr * sp * cy,
    ]


def chunk_statustext(text: str, chunk_id: int) -> list[tuple[bytes, int, int]]:
    """(text, id, chunk_seq) parts: one part with id 0 when it fits."""
    raw = text.encode("utf-8", errors="replace")
    if len(raw) <= STATUSTEXT_LEN:
        return [(raw, 0, 0)]
    parts = [raw[i : i + STATUSTEXT_LEN] for i in range(0, len(raw), STATUSTEXT_LEN)]
    if len(parts[-1]) == STATUSTEXT_LEN:
        parts.append(b"")  # a full last chunk would not say it is the last
    return [(part, chunk_id, seq) for seq, part in enumerate(parts)]


class TelemetryGenerator:
    def __init__(
        self,
        vehicle: SimVehicle,
        encoder: MAVLink,
        *,
        rates_hz: Mapping[int, float] = DEFAULT_RATES_HZ,
    ) -> None:
        self.vehicle = vehicle
        self._enc = encoder
        self._builders: dict[int, Callable[[], MAVLinkMessage]] = {
            mavlink.MAVLINK_MSG_ID_HEARTBEAT: self.heartbeat,
            mavlink.MAVLINK_MSG_ID_ATTITUDE: self.attitude,
            mavlink.MAVLINK_MSG_ID_GLOBAL_POSITION_INT: self.global_position_int,
            mavlink.MAVLINK_MSG_ID_VFR_HUD: self.vfr_hud,
            mavlink.MAVLINK_MSG_ID_SYS_STATUS: self.sys_status,
            mavlink.MAVLINK_MSG_ID_GPS_RAW_INT: self.gps_raw_int,
            mavlink.MAVLINK_MSG_ID_BATTERY_STATUS: self.battery_status,
            mavlink.MAVLINK_MSG_ID_RADIO_STATUS: self.radio_status,
            mavlink.MAVLINK_MSG_ID_GIMBAL_DEVICE_ATTITUDE_STATUS: self.gimbal_status,
            mavlink.MAVLINK_MSG_ID_MOUNT_STATUS: self.mount_status,
            mavlink.MAVLINK_MSG_ID_HOME_POSITION: self.home_position,
            mavlink.MAVLINK_MSG_ID_AUTOPILOT_VERSION: self.autopilot_version,
            mavlink.MAVLINK_MSG_ID_SYSTEM_TIME: self.system_time,
        }
        self._defaults = dict(rates_hz)
        self._interval: dict[int, float] = {k: 1.0 / hz for k, hz in rates_hz.items() if hz > 0}
        self._next: dict[int, float] = {}
        self._chunk_id = 0

    def can_build(self, msg_id: int) -> bool:
        return msg_id in self._builders

    def build(self, msg_id: int) -> MAVLinkMessage | None:
        builder = self._builders.get(msg_id)
        return builder() if builder is not None else None

    def set_interval(self, msg_id: int, interval_us: float) -> bool:
        """MAV_CMD_SET_MESSAGE_INTERVAL semantics: -1 stop, 0 default, else microseconds."""
        if msg_id not in self._builders:
            return False
        if interval_us < 0:
            self._interval.pop(msg_id, None)
        elif interval_us == 0:
            hz = self._defaults.get(msg_id, 0.0)
            if hz > 0:
                self._interval[msg_id] = 1.0 / hz
            else:
                self._interval.pop(msg_id, None)
        else:
            self._interval[msg_id] = max(interval_us * 1e-6, 0.01)  # at most 100 Hz
        self._next.pop(msg_id, None)
        return True

    def interval_s(self, msg_id: int) -> float | None:
        return self._interval.get(msg_id)

    def due(self, now_s: float) -> list[MAVLinkMessage]:
        out: list[MAVLinkMessage] = []
        nxt = self._next
        for msg_id, interval in self._interval.items():
            when = nxt.get(msg_id)
            if when is None or now_s >= when:
                out.append(self._builders[msg_id]())
                # catch up without bursting after a stall
                nxt[msg_id] = (
                    now_s + interval if when is None or now_s - when > interval else when + interval
                )
        out.extend(self.statustexts())
        return out

    def statustexts(self) -> list[MAVLinkMessage]:
        outbox = self.vehicle.outbox
        if not outbox:
            return []
        out = []
        for severity, text in outbox:
            self._chunk_id = self._chunk_id % 65535 + 1
            for raw, chunk_id, seq in chunk_statustext(text, self._chunk_id):
                out.append(self._enc.statustext_encode(severity, raw, chunk_id, seq))
        outbox.clear()
        return out

    # ------------------------------------------------------------------ builders

    def _boot_ms(self) -> int:
        return int(self.vehicle.time_s * 1000) & 0xFFFFFFFF

    def heartbeat(self) -> MAVLinkMessage:
        v = self.vehicle
        base = mavlink.MAV_MODE_FLAG_CUSTOM_MODE_ENABLED | mavlink.MAV_MODE_FLAG_STABILIZE_ENABLED
        if v.mode in _GUIDED_MODES:
            base |= mavlink.MAV_MODE_FLAG_GUIDED_ENABLED
        if v.armed:
            base |= mavlink.MAV_MODE_FLAG_SAFETY_ARMED
        state = mavlink.MAV_STATE_ACTIVE if v.armed else mavlink.MAV_STATE_STANDBY
        return self._enc.heartbeat_encode(
            mavlink.MAV_TYPE_QUADROTOR,
            mavlink.MAV_AUTOPILOT_ARDUPILOTMEGA,
            base,
            v.custom_mode,
            state,
        )

    def attitude(self) -> MAVLinkMessage:
        v = self.vehicle
        yaw = math.radians(v.heading_deg)
        if yaw > math.pi:
            yaw -= 2 * math.pi
        return self._enc.attitude_encode(
            self._boot_ms(), v.roll_rad, v.pitch_rad, yaw, 0.0, 0.0, 0.0
        )

    def global_position_int(self) -> MAVLinkMessage:
        v = self.vehicle
        return self._enc.global_position_int_encode(
            self._boot_ms(),
            int(v.lat * 1e7),
            int(v.lon * 1e7),
            int((v.home_alt_msl + v.alt_m) * 1000),
            int(v.alt_m * 1000),
            int(v.vn * 100),
            int(v.ve * 100),
            int(v.vd * 100),
            int(v.heading_deg * 100) % 36000,
        )

    def vfr_hud(self) -> MAVLinkMessage:
        v = self.vehicle
        throttle = 0 if not v.armed or v.landed else 48
        return self._enc.vfr_hud_encode(
            v.groundspeed,
            v.groundspeed,
            int(v.heading_deg) % 360,
            throttle,
            v.home_alt_msl + v.alt_m,
            -v.vd,
        )

    def _current_ca(self) -> int:
        v = self.vehicle
        return 0 if not v.armed else 1650 if not v.landed else 200

    def sys_status(self) -> MAVLinkMessage:
        v = self.vehicle
        return self._enc.sys_status_encode(
            _SENSORS,
            _SENSORS,
            _SENSORS,
            280,
            int(v.voltage * 1000),
            self._current_ca(),
            int(v.battery_pct),
            0,
            0,
            0,
            0,
            0,
            0,
        )

    def battery_status(self) -> MAVLinkMessage:
        v = self.vehicle
        voltages = [min(int(v.voltage * 1000), 65534)] + [65535] * 9
        consumed = int((100.0 - v.battery_pct) * 52.0)  # 5200 mAh pack
        return self._enc.battery_status_encode(
            0,
            mavlink.MAV_BATTERY_FUNCTION_ALL,
            mavlink.MAV_BATTERY_TYPE_LIPO,
            32767,
            voltages,
            self._current_ca(),
            consumed,
            -1,
            int(v.battery_pct),
        )

    def gps_raw_int(self) -> MAVLinkMessage:
        v = self.vehicle
        return self._enc.gps_raw_int_encode(
            int(v.time_s * 1e6),
            mavlink.GPS_FIX_TYPE_3D_FIX,
            int(v.lat * 1e7),
            int(v.lon * 1e7),
            int((v.home_alt_msl + v.alt_m) * 1000),
            78,
            120,
            int(v.groundspeed * 100),
            int(v.heading_deg * 100) % 36000,
            16,
        )

    def radio_status(self) -> MAVLinkMessage:
        # a gently breathing link, so a dashboard's RSSI is visibly live
        wobble = int(6 * math.sin(self.vehicle.time_s / 7.0))
        return self._enc.radio_status_encode(210 + wobble, 204 - wobble, 95, 40, 42, 0, 0)

    def gimbal_status(self) -> MAVLinkMessage:
        v = self.vehicle
        q = quaternion(0.0, math.radians(v.gimbal_pitch_deg), math.radians(v.gimbal_yaw_deg))
        nan = float("nan")
        return self._enc.gimbal_device_attitude_status_encode(
            0,
            0,
            self._boot_ms(),
            mavlink.GIMBAL_DEVICE_FLAGS_YAW_IN_VEHICLE_FRAME,
            q,
            nan,
            nan,
            nan,
            0,
            nan,
            nan,
            1,
        )

    def mount_status(self) -> MAVLinkMessage:
        v = self.vehicle
        return self._enc.mount_status_encode(
            0,
            0,
            int(v.gimbal_pitch_deg * 100),
            0,
            int(v.gimbal_yaw_deg * 100),
            mavlink.MAV_MOUNT_MODE_MAVLINK_TARGETING,
        )

    def home_position(self) -> MAVLinkMessage:
        v = self.vehicle
        return self._enc.home_position_encode(
            int(v.home_lat * 1e7),
            int(v.home_lon * 1e7),
            int(v.home_alt_msl * 1000),
            0.0,
            0.0,
            0.0,
            [1.0, 0.0, 0.0, 0.0],
            0.0,
            0.0,
            0.0,
        )

    def autopilot_version(self) -> MAVLinkMessage:
        return self._enc.autopilot_version_encode(
            _CAPABILITIES,
            FLIGHT_SW_VERSION,
            0,
            0,
            0,
            [0] * 8,
            [0] * 8,
            [0] * 8,
            0x1209,
            0x5741,
            0x5349_4D00 + self._enc.srcSystem,
        )

    def system_time(self) -> MAVLinkMessage:
        return self._enc.system_time_encode(time.time_ns() // 1000, self._boot_ms())
