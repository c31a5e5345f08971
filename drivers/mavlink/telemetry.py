"""Per-vehicle telemetry: raw MAVLink messages in, one flat ``Telemetry`` out.

Units are SI and degrees; names say the unit. A field is ``None`` until the
vehicle has told us its value (never a made-up zero). Only the autopilot
component's messages set flight state, so a companion computer or camera
relaying its own HEARTBEAT or SYS_STATUS cannot overwrite it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from drivers.mavlink.dialect import mavlink
from drivers.mavlink.events import (
    ArmedChanged,
    LinkEvent,
    ModeChanged,
    StatusText,
    VehicleDiscovered,
    VehicleLost,
    VehicleRegained,
)
from drivers.mavlink.framing import Frame
from drivers.mavlink.modes import mode_name

EmitEvent = Callable[[LinkEvent], None]

#: how much history link quality and message rate are computed over
WINDOW_S = 5.0
_BUCKET_S = 1.0
_BUCKETS = int(WINDOW_S / _BUCKET_S)
#: a RADIO_STATUS older than this no longer counts towards link quality
RADIO_FRESH_S = 5.0
#: an unfinished chunked STATUSTEXT is emitted as it is after this long
STATUSTEXT_CHUNK_TIMEOUT_S = 2.0
#: the sequence number wraps at 256; a jump larger than this is a restart
#: or a reordering (e.g. two radios), not loss
_MAX_SEQ_GAP = 128


def _names(enum: str, prefix: str) -> dict[int, str]:
    return {
        value: entry.name[len(prefix) :] if entry.name.startswith(prefix) else entry.name
        for value, entry in mavlink.enums[enum].items()
        if not entry.name.endswith("_ENUM_END")
    }


AUTOPILOT_NAMES = _names("MAV_AUTOPILOT", "MAV_AUTOPILOT_")
TYPE_NAMES = _names("MAV_TYPE", "MAV_TYPE_")
STATE_NAMES = _names("MAV_STATE", "MAV_STATE_")
FIX_NAMES = _names("GPS_FIX_TYPE", "GPS_FIX_TYPE_")
SEVERITY_NAMES = _names("MAV_SEVERITY", "MAV_SEVERITY_")

#: components that are never the vehicle itself
_NOT_AUTOPILOT_TYPES = {
    mavlink.MAV_TYPE_GCS,
    mavlink.MAV_TYPE_CAMERA,
    mavlink.MAV_TYPE_GIMBAL,
    mavlink.MAV_TYPE_ADSB,
    mavlink.MAV_TYPE_ONBOARD_CONTROLLER,
    mavlink.MAV_TYPE_SERVO,
    mavlink.MAV_TYPE_ODID,
    mavlink.MAV_TYPE_BATTERY,
    mavlink.MAV_TYPE_PARACHUTE,
    mavlink.MAV_TYPE_LOG,
    mavlink.MAV_TYPE_OSD,
    mavlink.MAV_TYPE_IMU,
    mavlink.MAV_TYPE_GPS,
    mavlink.MAV_TYPE_WINCH,
}


def _rssi_quality(raw: int) -> float:
    """Link quality implied by a RADIO_STATUS RSSI, 0..100.

    RSSI units are device-specific; we read them as SiK radios (the common
    case) define them, dBm = raw / 1.9 - 127, and call -70 dBm or better a
    perfect link and -120 dBm (the SiK noise floor) none. A raw RSSI is not a
    loss rate, so a strong signal never lowers the sequence-based figure.
    """
    dbm = raw / 1.9 - 127.0
    return max(0.0, min(100.0, (dbm + 120.0) * 2.0))


def is_autopilot_heartbeat(msg: Any) -> bool:
    """HEARTBEAT of a flight controller (not a GCS, camera, gimbal, ...)."""
    return bool(
        msg.autopilot != mavlink.MAV_AUTOPILOT_INVALID and msg.type not in _NOT_AUTOPILOT_TYPES
    )


@dataclass(slots=True)
class Home:
    lat: float
    lon: float
    alt_msl_m: float


@dataclass(slots=True)
class Telemetry:
    """One vehicle's state. Snapshots (``copy()``) are safe to hand out."""

    sysid: int
    lat: float | None = None
    lon: float | None = None
    alt_msl_m: float | None = None
    alt_rel_m: float | None = None
    heading_deg: float | None = None
    groundspeed_mps: float | None = None
    climb_mps: float | None = None
    roll_deg: float | None = None
    pitch_deg: float | None = None
    yaw_deg: float | None = None
    battery_pct: float | None = None
    battery_v: float | None = None
    gps_fix: str | None = None
    satellites: int | None = None
    mode: str | None = None
    armed: bool | None = None
    system_status: str | None = None
    autopilot: str | None = None
    vehicle_type: str | None = None
    #: 0..100 from sequence gaps (and radio RSSI where reported); None before data
    link_quality_pct: float | None = None
    #: RADIO_STATUS rssi / remrssi, raw device units 0..254 (SiK: dBm = raw/1.9 - 127)
    rssi: int | None = None
    remote_rssi: int | None = None
    home: Home | None = None
    gimbal_pitch_deg: float | None = None
    gimbal_yaw_deg: float | None = None
    last_message_ns: int | None = None
    msgs_per_s: float = 0.0
    lost: bool = False
    #: raw ids, for building commands (mode tables depend on them)
    autopilot_id: int | None = None
    type_id: int | None = None
    custom_mode: int | None = None

    def copy(self) -> Telemetry:
        return replace(self, home=replace(self.home) if self.home is not None else None)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class _Buckets:
    """Counts over the last few seconds in one-second buckets."""

    received: list[int] = field(default_factory=lambda: [0] * _BUCKETS)
    lost: list[int] = field(default_factory=lambda: [0] * _BUCKETS)
    index: int = 0
    started: float = 0.0
    filled: int = 1


class TelemetryNormaliser:
    """Folds one vehicle's (one sysid's) messages into a :class:`Telemetry`."""

    def __init__(
        self, sysid: int, emit: EmitEvent, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.telemetry = Telemetry(sysid)
        self.sysid = sysid
        self._emit = emit
        self._clock = clock
        #: component id of the flight controller, from its HEARTBEAT
        self.autopilot_compid: int | None = None
        #: every component heard from, with its MAV_TYPE (or None before a HEARTBEAT)
        self.components: dict[int, int | None] = {}
        self._last_seq: dict[int, int] = {}
        self._b = _Buckets(started=clock())
        self._last_heard = clock()
        self._lost_at: float | None = None
        self._radio_at: float | None = None
        self._chunks: dict[tuple[int, int], tuple[float, int, list[str]]] = {}
        self.discovered = False
        self._autopilot_handlers: dict[int, Callable[[Any], None]] = {
            mavlink.MAVLINK_MSG_ID_GLOBAL_POSITION_INT: self._global_position_int,
            mavlink.MAVLINK_MSG_ID_VFR_HUD: self._vfr_hud,
            mavlink.MAVLINK_MSG_ID_ATTITUDE: self._attitude,
            mavlink.MAVLINK_MSG_ID_SYS_STATUS: self._sys_status,
            mavlink.MAVLINK_MSG_ID_BATTERY_STATUS: self._battery_status,
            mavlink.MAVLINK_MSG_ID_GPS_RAW_INT: self._gps_raw_int,
            mavlink.MAVLINK_MSG_ID_HOME_POSITION: self._home_position,
        }
        self._any_handlers: dict[int, Callable[[Any, int], None]] = {
            mavlink.MAVLINK_MSG_ID_HEARTBEAT: self._heartbeat,
            mavlink.MAVLINK_MSG_ID_STATUSTEXT: self._statustext,
            mavlink.MAVLINK_MSG_ID_RADIO_STATUS: self._radio_status_from,
            mavlink.MAVLINK_MSG_ID_GIMBAL_DEVICE_ATTITUDE_STATUS: self._gimbal_status,
            mavlink.MAVLINK_MSG_ID_MOUNT_STATUS: self._mount_status,
        }

    # ------------------------------------------------------------------ intake

    def handle(self, frame: Frame) -> None:
        """Account for one frame of this sysid and fold its message in."""
        now = self._clock()
        t = self.telemetry
        t.last_message_ns = time.time_ns()
        self._last_heard = now
        if self._lost_at is not None:
            lost_for = now - self._lost_at
            self._lost_at = None
            t.lost = False
            self._emit(VehicleRegained(sysid=self.sysid, lost_for_s=round(lost_for, 3)))
        b = self._b
        if now - b.started >= _BUCKET_S:
            self._roll(now)
        compid = frame.compid
        last = self._last_seq.get(compid)
        if last is not None:
            gap = (frame.seq - last - 1) & 0xFF
            # gap 255 is a repeat of the last seq (duplicate via two links)
            if gap < _MAX_SEQ_GAP:
                b.lost[b.index] += gap
        self._last_seq[compid] = frame.seq
        b.received[b.index] += 1
        msg = frame.msg
        if msg is None:
            return
        msg_id = frame.msg_id
        if compid == self.autopilot_compid or (self.autopilot_compid is None and compid == 1):
            handler = self._autopilot_handlers.get(msg_id)
            if handler is not None:
                handler(msg)
                return
        any_handler = self._any_handlers.get(msg_id)
        if any_handler is not None:
            any_handler(msg, compid)
        elif compid not in self.components:
            self.components[compid] = None

    def radio_status(self, msg: Any) -> None:
        """RADIO_STATUS that applies to this vehicle's link (e.g. a SiK radio's own)."""
        t = self.telemetry
        t.rssi = None if msg.rssi == 255 else int(msg.rssi)
        t.remote_rssi = None if msg.remrssi == 255 else int(msg.remrssi)
        self._radio_at = self._clock()
        self._update_quality()

    def check_silence(self, lost_after_s: float) -> None:
        """Called periodically: emit :class:`VehicleLost` once after silence."""
        now = self._clock()
        silent = now - self._last_heard
        if self._lost_at is None and silent >= lost_after_s:
            self._lost_at = self._last_heard
            t = self.telemetry
            t.lost = True
            t.msgs_per_s = 0.0
            self._emit(VehicleLost(sysid=self.sysid, silent_s=round(silent, 3)))
        elif now - self._b.started >= _BUCKET_S:
            # keep rates honest while traffic is thin
            self._roll(now)
        self._flush_stale_chunks(now)

    @property
    def is_lost(self) -> bool:
        return self._lost_at is not None

    @property
    def silent_s(self) -> float:
        return self._clock() - self._last_heard

    # ------------------------------------------------------------------ windows

    def _roll(self, now: float) -> None:
        b = self._b
        steps = min(int((now - b.started) / _BUCKET_S), _BUCKETS)
        for _ in range(steps):
            b.index = (b.index + 1) % _BUCKETS
            b.received[b.index] = 0
            b.lost[b.index] = 0
            b.filled = min(b.filled + 1, _BUCKETS)
        b.started = now if steps == _BUCKETS else b.started + steps * _BUCKET_S
        self._update_quality()

    def _update_quality(self) -> None:
        b = self._b
        t = self.telemetry
        # the current bucket is partial; rate over the complete ones
        complete = b.filled - 1
        received_done = sum(b.received) - b.received[b.index]
        if complete > 0:
            t.msgs_per_s = round(received_done / (complete * _BUCKET_S), 1)
        received = sum(b.received)
        lost = sum(b.lost)
        quality = 100.0 * received / (received + lost) if received + lost else None
        if self._radio_at is not None and self._clock() - self._radio_at <= RADIO_FRESH_S:
            radio = [_rssi_quality(raw) for raw in (t.rssi, t.remote_rssi) if raw is not None]
            if radio:
                quality = min(radio) if quality is None else min(quality, min(radio))
        t.link_quality_pct = None if quality is None else round(quality, 1)

    # ------------------------------------------------------------------ messages

    def _heartbeat(self, msg: Any, compid: int) -> None:
        self.components[compid] = msg.type
        if self.autopilot_compid is None:
            if not is_autopilot_heartbeat(msg):
                return
            self.autopilot_compid = compid
        elif compid != self.autopilot_compid:
            return
        t = self.telemetry
        new_mode = mode_name(msg.autopilot, msg.type, msg.custom_mode, msg.base_mode)
        armed = bool(msg.base_mode & mavlink.MAV_MODE_FLAG_SAFETY_ARMED)
        old_mode, old_armed = t.mode, t.armed
        t.autopilot_id = msg.autopilot
        t.type_id = msg.type
        t.custom_mode = msg.custom_mode
        t.autopilot = AUTOPILOT_NAMES.get(msg.autopilot, str(msg.autopilot))
        t.vehicle_type = TYPE_NAMES.get(msg.type, str(msg.type))
        t.system_status = STATE_NAMES.get(msg.system_status, str(msg.system_status))
        t.mode = new_mode
        t.armed = armed
        if not self.discovered:
            self.discovered = True
            self._emit(
                VehicleDiscovered(
                    sysid=self.sysid, autopilot=t.autopilot, vehicle_type=t.vehicle_type
                )
            )
            return
        if old_mode is not None and old_mode != new_mode:
            self._emit(ModeChanged(sysid=self.sysid, old=old_mode, new=new_mode))
        if old_armed is not None and old_armed != armed:
            self._emit(ArmedChanged(sysid=self.sysid, armed=armed))

    def _global_position_int(self, msg: Any) -> None:
        t = self.telemetry
        if msg.lat == 0 and msg.lon == 0:
            return  # no position yet (ArduPilot sends zeros before a fix)
        t.lat = msg.lat * 1e-7
        t.lon = msg.lon * 1e-7
        t.alt_msl_m = msg.alt * 1e-3
        t.alt_rel_m = msg.relative_alt * 1e-3
        if msg.hdg != 65535:
            t.heading_deg = msg.hdg * 0.01
        if t.groundspeed_mps is None:
            t.groundspeed_mps = math.hypot(msg.vx, msg.vy) * 0.01
        t.climb_mps = -msg.vz * 0.01

    def _vfr_hud(self, msg: Any) -> None:
        t = self.telemetry
        t.groundspeed_mps = msg.groundspeed
        t.climb_mps = msg.climb
        if t.heading_deg is None:
            t.heading_deg = float(msg.heading)

    def _attitude(self, msg: Any) -> None:
        t = self.telemetry
        t.roll_deg = math.degrees(msg.roll)
        t.pitch_deg = math.degrees(msg.pitch)
        t.yaw_deg = math.degrees(msg.yaw) % 360.0

    def _sys_status(self, msg: Any) -> None:
        t = self.telemetry
        if msg.voltage_battery != 65535 and msg.voltage_battery > 0:
            t.battery_v = msg.voltage_battery * 1e-3
        if msg.battery_remaining >= 0:
            t.battery_pct = float(msg.battery_remaining)

    def _battery_status(self, msg: Any) -> None:
        if msg.id != 0:
            return  # the first battery is the one a dashboard shows
        t = self.telemetry
        if msg.battery_remaining >= 0:
            t.battery_pct = float(msg.battery_remaining)
        cells = [v for v in msg.voltages if v != 65535]
        cells += [v for v in getattr(msg, "voltages_ext", ()) if v not in (0, 65535)]
        if cells:
            t.battery_v = sum(cells) * 1e-3

    def _gps_raw_int(self, msg: Any) -> None:
        t = self.telemetry
        t.gps_fix = FIX_NAMES.get(msg.fix_type, str(msg.fix_type))
        t.satellites = None if msg.satellites_visible == 255 else msg.satellites_visible

    def _home_position(self, msg: Any) -> None:
        self.telemetry.home = Home(msg.latitude * 1e-7, msg.longitude * 1e-7, msg.altitude * 1e-3)

    def _radio_status_from(self, msg: Any, compid: int) -> None:
        self.radio_status(msg)

    def _gimbal_status(self, msg: Any, compid: int) -> None:
        w, x, y, z = msg.q
        if any(math.isnan(v) for v in (w, x, y, z)):
            return
        t = self.telemetry
        # Tait-Bryan from the quaternion; gimbals report (roll, pitch, yaw)
        sinp = max(-1.0, min(1.0, 2.0 * (w * y - z * x)))
        t.gimbal_pitch_deg = round(math.degrees(math.asin(sinp)), 2)
        yaw = math.degrees(math.atan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z)))
        t.gimbal_yaw_deg = round(yaw, 2)

    def _mount_status(self, msg: Any, compid: int) -> None:
        t = self.telemetry
        t.gimbal_pitch_deg = msg.pointing_a * 0.01
        t.gimbal_yaw_deg = msg.pointing_c * 0.01

    def _statustext(self, msg: Any, compid: int) -> None:
        severity = SEVERITY_NAMES.get(msg.severity, str(msg.severity))
        raw = getattr(msg, "_text_raw", b"")
        text: str = msg.text
        if not msg.id:
            self._emit(StatusText(sysid=self.sysid, compid=compid, severity=severity, text=text))
            return
        key = (compid, msg.id)
        _, _, parts = self._chunks.get(key, (0.0, msg.severity, []))
        # chunk_seq tells the position; a lost chunk leaves a visible gap
        while len(parts) < msg.chunk_seq:
            parts.append("…")
        if len(parts) == msg.chunk_seq:
            parts.append(text)
        # a chunk shorter than the field (NUL-terminated) is the last one
        if len(raw.split(b"\x00", 1)[0]) < 50:
            self._chunks.pop(key, None)
            self._emit(
                StatusText(sysid=self.sysid, compid=compid, severity=severity, text="".join(parts))
            )
        else:
            self._chunks[key] = (self._clock(), msg.severity, parts)

    def _flush_stale_chunks(self, now: float) -> None:
        for key, (started, severity, parts) in list(self._chunks.items()):
            if now - started >= STATUSTEXT_CHUNK_TIMEOUT_S:
                del self._chunks[key]
                self._emit(
                    StatusText(
                        sysid=self.sysid,
                        compid=key[0],
                        severity=SEVERITY_NAMES.get(severity, str(severity)),
                        text="".join(parts),
                    )
                )
