"""A simulated multicopter's state and motion, ArduCopter-flavoured.

Kinematics, not physics: the vehicle moves towards what its mode asks at a
capped speed and climb rate, which is all a ground station can tell apart.
Positions are kept in metres north/east of home and converted to lat/lon on
the way out. Nothing here does I/O; ``step(dt)`` advances time.

At start (``start_flying=True``) the vehicle is armed in GUIDED, 50 m above
home, flying a slow circle of 60 m radius around home at 5 m/s (one lap in
about 75 s) so a dashboard shows motion at once. Any command that gives it
somewhere else to be ends the circle.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from drivers.mavlink.modes import COPTER_MODES

EARTH_M_PER_DEG = 111_319.49
MODE = {name: number for number, name in COPTER_MODES.items()}

#: modes in which the simulated copter just holds where it is
_HOLDING_MODES = {
    "LOITER",
    "BRAKE",
    "POSHOLD",
    "ALT_HOLD",
    "STABILIZE",
    "ACRO",
    "SPORT",
    "FLOWHOLD",
    "DRIFT",
}
#: modes ArduCopter refuses to enter in our situation (no mission, no follow target, ...)
_REFUSED_MODES = {
    "AUTO",
    "FOLLOW",
    "ZIGZAG",
    "THROW",
    "AUTOROTATE",
    "TURTLE",
    "FLIP",
    "SYSTEMID",
    "AUTOTUNE",
}


@dataclass(slots=True)
class SimConfig:
    cruise_mps: float = 10.0
    circle_mps: float = 5.0
    circle_radius_m: float = 60.0
    climb_mps: float = 2.5
    descent_mps: float = 1.5
    #: ArduCopter's LAND_SPEED: the last 10 m are flown this slowly
    land_final_mps: float = 0.7
    rtl_alt_m: float = 15.0
    start_alt_m: float = 50.0
    #: battery % lost per second of flight (about 1 % every 40 s)
    drain_pct_per_s: float = 0.025
    gimbal_rate_dps: float = 90.0


@dataclass(slots=True)
class SimVehicle:
    home_lat: float
    home_lon: float
    home_alt_msl: float = 30.0
    config: SimConfig = field(default_factory=SimConfig)
    north_m: float = 0.0
    east_m: float = 0.0
    alt_m: float = 0.0
    vn: float = 0.0
    ve: float = 0.0
    vd: float = 0.0
    heading_deg: float = 0.0
    roll_rad: float = 0.0
    pitch_rad: float = 0.0
    armed: bool = False
    mode: str = "STABILIZE"
    battery_pct: float = 100.0
    gimbal_pitch_deg: float = 0.0
    gimbal_yaw_deg: float = 0.0
    gimbal_target: tuple[float, float] = (0.0, 0.0)
    circling: bool = False
    circle_angle: float = 0.0
    target: tuple[float, float, float] | None = None  # north, east, alt
    #: text messages (severity, text) for the link to send, oldest first
    outbox: list[tuple[int, str]] = field(default_factory=list)
    time_s: float = 0.0
    _climb_to: float | None = None

    @classmethod
    def flying(
        cls, home_lat: float, home_lon: float, config: SimConfig | None = None
    ) -> SimVehicle:
        cfg = config or SimConfig()
        v = cls(home_lat, home_lon, config=cfg)
        v.armed = True
        v.mode = "GUIDED"
        v.alt_m = cfg.start_alt_m
        v.circling = True
        v.north_m = cfg.circle_radius_m
        return v

    # ------------------------------------------------------------------ outputs

    @property
    def lat(self) -> float:
        return self.home_lat + self.north_m / EARTH_M_PER_DEG

    @property
    def lon(self) -> float:
        return self.home_lon + self.east_m / (
            EARTH_M_PER_DEG * math.cos(math.radians(self.home_lat))
        )

    @property
    def custom_mode(self) -> int:
        return MODE[self.mode]

    @property
    def landed(self) -> bool:
        return self.alt_m <= 0.05

    @property
    def groundspeed(self) -> float:
        return math.hypot(self.vn, self.ve)

    @property
    def voltage(self) -> float:
        # 4S pack: 16.8 V full, about 14.0 V empty under load
        return 14.0 + 2.8 * self.battery_pct / 100.0

    def to_local(self, lat: float, lon: float) -> tuple[float, float]:
        north = (lat - self.home_lat) * EARTH_M_PER_DEG
        east = (lon - self.home_lon) * EARTH_M_PER_DEG * math.cos(math.radians(self.home_lat))
        return north, east

    def say(self, severity: int, text: str) -> None:
        self.outbox.append((severity, text))

    # ------------------------------------------------------------------ control

    def set_mode(self, name: str) -> bool:
        """ArduCopter's set_mode: False when the mode is refused."""
        name = name.upper()
        if name not in MODE or name in _REFUSED_MODES:
            return False
        if (
            name in ("LAND", "RTL", "BRAKE", "LOITER", "GUIDED", "POSHOLD", "CIRCLE", "SMART_RTL")
            and self.home_lat == 0
        ):
            return False
        self.mode = name
        self.circling = name == "CIRCLE"
        self.target = None
        self._climb_to = None
        if name == "RTL" and self.armed and not self.landed:
            self._climb_to = max(self.alt_m, self.config.rtl_alt_m)
        return True

    def set_mode_number(self, number: int) -> bool:
        name = COPTER_MODES.get(number)
        return name is not None and self.set_mode(name)

    def go_to(self, lat: float, lon: float, alt_rel: float) -> None:
        north, east = self.to_local(lat, lon)
        self.mode = "GUIDED"
        self.circling = False
        self.target = (north, east, alt_rel)

    def arm(self) -> bool:
        if self.armed:
            return True
        if not self.landed or self.mode not in (
            "GUIDED",
            "LOITER",
            "STABILIZE",
            "ALT_HOLD",
            "POSHOLD",
        ):
            return False
        self.armed = True
        self.say(6, "Arming motors")
        return True

    def disarm(self, *, force: bool = False) -> bool:
        if not self.armed:
            return True
        if not self.landed and not force:
            return False
        self.armed = False
        self.vn = self.ve = self.vd = 0.0
        self.say(6, "Disarming motors")
        return True

    def takeoff(self, alt: float) -> bool:
        if not self.armed or not self.landed or self.mode != "GUIDED" or alt <= 0:
            return False
        self.target = (self.north_m, self.east_m, alt)
        return True

    def point_gimbal(self, pitch: float, yaw: float) -> None:
        self.gimbal_target = (max(-90.0, min(30.0, pitch)), ((yaw + 180.0) % 360.0) - 180.0)

    # ------------------------------------------------------------------ motion

    def step(self, dt: float) -> None:
        if dt <= 0:
            return
        self.time_s += dt
        self._step_gimbal(dt)
        if not self.armed:
            self.vn = self.ve = self.vd = 0.0
            return
        self.battery_pct = max(0.0, self.battery_pct - self.config.drain_pct_per_s * dt)
        if self.battery_pct < 30.0 <= self.battery_pct + self.config.drain_pct_per_s * dt:
            self.say(4, "Battery 1 is low 14.8V used 3150 mAh")
        mode = self.mode
        if mode == "LAND":
            self._hold_horizontal()
            self._descend(dt)
        elif mode in ("RTL", "SMART_RTL"):
            self._rtl(dt)
        elif mode == "GUIDED" and self.circling:
            self._circle(dt)
        elif mode == "GUIDED" and self.target is not None:
            self._fly_to(dt, *self.target)
        elif mode == "CIRCLE":
            self._circle(dt)
        else:  # holding modes, and GUIDED with nothing to do
            self._hold_horizontal()
            self.vd = 0.0
        self._integrate(dt)

    def _integrate(self, dt: float) -> None:
        self.north_m += self.vn * dt
        self.east_m += self.ve * dt
        self.alt_m = max(0.0, self.alt_m - self.vd * dt)
        speed = self.groundspeed
        if speed > 0.3:
            self.heading_deg = math.degrees(math.atan2(self.ve, self.vn)) % 360.0
        # a copter leans into its motion: about 2 degrees per m/s
        self.pitch_rad = -math.radians(min(25.0, 2.0 * speed))
        self.roll_rad = math.radians(8.0) if self.circling else 0.0
        if (
            self.armed
            and self.landed
            and self.mode in ("LAND", "RTL", "SMART_RTL")
            and self.vd >= 0
        ):
            self.vd = 0.0
            self.say(6, "Land complete")
            self.disarm()

    def _hold_horizontal(self) -> None:
        self.vn = self.ve = 0.0

    def _descend(self, dt: float) -> None:
        # ArduCopter slows to its final landing speed for the last 10 m
        rate = (
            self.config.descent_mps
            if self.alt_m > 10.0
            else min(self.config.descent_mps, self.config.land_final_mps)
        )
        self.vd = rate

    def _fly_to(self, dt: float, north: float, east: float, alt: float) -> bool:
        dn = north - self.north_m
        de = east - self.east_m
        dist = math.hypot(dn, de)
        speed = min(self.config.cruise_mps, dist / dt if dt > 0 else 0.0)
        if dist > 0.05:
            self.vn = dn / dist * speed
            self.ve = de / dist * speed
        else:
            self.vn = self.ve = 0.0
        dz = alt - self.alt_m
        if dz > 0:
            self.vd = -min(self.config.climb_mps, dz / dt)
        else:
            self.vd = min(self.config.descent_mps, -dz / dt)
        return dist < 0.5 and abs(dz) < 0.3

    def _circle(self, dt: float) -> None:
        cfg = self.config
        radius = cfg.circle_radius_m
        self.circle_angle = (self.circle_angle + cfg.circle_mps / radius * dt) % (2 * math.pi)
        north = radius * math.cos(self.circle_angle)
        east = radius * math.sin(self.circle_angle)
        self.vn = (north - self.north_m) / dt
        self.ve = (east - self.east_m) / dt
        # cap so that leaving another pattern for the circle is not a jump
        speed = math.hypot(self.vn, self.ve)
        if speed > cfg.cruise_mps:
            self.vn *= cfg.cruise_mps / speed
            self.ve *= cfg.cruise_mps / speed
        self.vd = 0.0

    def _rtl(self, dt: float) -> None:
        if self._climb_to is not None and self.alt_m < self._climb_to - 0.3:
            self._hold_horizontal()
            self.vd = -min(self.config.climb_mps, (self._climb_to - self.alt_m) / dt)
            return
        self._climb_to = None
        if math.hypot(self.north_m, self.east_m) > 0.5:
            self._fly_to(dt, 0.0, 0.0, self.alt_m)
            self.vd = 0.0
            return
        self._hold_horizontal()
        self._descend(dt)

    def _step_gimbal(self, dt: float) -> None:
        max_step = self.config.gimbal_rate_dps * dt
        tp, ty = self.gimbal_target
        self.gimbal_pitch_deg += max(-max_step, min(max_step, tp - self.gimbal_pitch_deg))
        self.gimbal_yaw_deg += max(-max_step, min(max_step, ty - self.gimbal_yaw_deg))
