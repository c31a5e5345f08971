"""One drone: its full telemetry and status, with the command keys."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import Footer, Static

from ui import geo
from ui.format import NONE, age_text, clean, clock_text, distance_text, number
from ui.requests import CommandDrone
from ui.screens.detail import DetailScreen
from ui.state import DashboardState, DroneView
from ui.widgets.detail import Field, FieldList
from ui.widgets.parts import aged, battery_style, part, word_style


class DroneScreen(DetailScreen):
    BINDINGS: ClassVar[list[BindingType]] = [
        *DetailScreen.BINDINGS,
        Binding("r", "command('rtl')", "RTL"),
        Binding("h", "command('hold')", "Hold"),
        Binding("l", "command('land')", "Land"),
        Binding("g", "command('goto')", "Go to"),
    ]

    def __init__(self, state: DashboardState, drone_id: str) -> None:
        super().__init__(state, drone_id)
        self.drone_id = drone_id

    def compose(self) -> ComposeResult:
        yield Static(id="detail-title")
        yield FieldList(id="fields")
        yield Footer()

    def refresh_view(self) -> None:
        view = self.state.drones.get(self.drone_id)
        if view is None:
            return
        now = self.state.now()
        fields = self.query_one(FieldList)
        cond = view.condition(now)
        self.query_one("#detail-title", Static).update(Text.assemble(
            (f"Drone {view.drone_id} ", "bold"),
            (f"({view.link_name or view.link}, sysid {view.sysid or NONE})  ", ""),
            (cond.upper(), word_style(fields, cond))))
        fields.show(drone_fields(fields, view, self.state, now))

    def action_command(self, action: str) -> None:
        self.post_message(CommandDrone(self.drone_id, action))


def drone_fields(w: FieldList, d: DroneView, dashboard: DashboardState,
                 now: float) -> list[Field]:
    s, t = d.status, d.telemetry
    s_age, t_age = d.status_age(now), d.telemetry_age(now)
    fields: list[Field] = []
    if s is not None:
        fields += [
            ("state", aged(w, clean(s.state, 16) or NONE, s_age)),
            ("mode", aged(w, clean(s.mode, 24) or NONE, s_age)),
            ("armed", aged(w, "ARMED" if s.armed is True else "disarmed", s_age,
                           part(w, "warn") if s.armed is True else None)),
            ("system", aged(w, clean(s.system_status, 24) or NONE, s_age)),
            ("autopilot", aged(w, " ".join(x for x in (clean(s.autopilot, 24),
                                                       clean(s.vehicle_type, 24)) if x)
                               or NONE, s_age)),
            ("link quality", aged(w, number(s.link_quality_pct, ".0f", "%", lo=0, hi=100),
                                  s_age)),
            ("messages", aged(w, number(s.msgs_per_s, ".1f", "/s", lo=0), s_age)),
            ("last message", aged(w, age_text(d.message_age(now)), d.message_age(now))),
            ("home", Text(_pos(s.home_lat, s.home_lon, s.home_alt_m))),
            ("status age", aged(w, age_text(s_age), s_age)),
        ]
    if t is not None:
        here = dashboard.position
        there = d.position()
        bearing = (f", bearing {geo.bearing_deg(here, there):.0f}°"
                   if here is not None and there is not None else "")
        fields += [
            ("position", aged(w, _pos(t.lat, t.lon, None), t_age)),
            ("from vehicle", aged(w, distance_text(dashboard.distance_m(d)) + bearing, t_age)),
            ("altitude", aged(w, f"{number(t.alt_rel_m, '.1f', ' m')} rel, "
                                 f"{number(t.alt_msl_m, '.1f', ' m')} MSL", t_age)),
            ("heading", aged(w, number(t.heading_deg, ".0f", "°"), t_age)),
            ("ground speed", aged(w, number(t.groundspeed_mps, ".1f", " m/s", lo=0), t_age)),
            ("climb", aged(w, number(t.climb_mps, ".1f", " m/s"), t_age)),
            ("attitude", aged(w, f"roll {number(t.roll_deg, '.0f', '°')} pitch "
                                 f"{number(t.pitch_deg, '.0f', '°')} yaw "
                                 f"{number(t.yaw_deg, '.0f', '°')}", t_age)),
            ("battery", aged(w, f"{number(t.battery_pct, '.0f', '%', lo=0, hi=100)} "
                                f"{number(t.battery_v, '.1f', ' V', lo=0)}", t_age,
                             battery_style(w, t.battery_pct))),
            ("GPS", aged(w, f"{clean(t.gps_fix, 12) or NONE}, "
                            f"{number(t.satellites, '.0f')} satellites", t_age)),
            ("telemetry age", aged(w, age_text(t_age), t_age)),
        ]
    if s is None and t is None:
        fields.append(("state", Text("no data", style=part(w, "muted"))))
    c = d.last_command
    if c is not None:
        ms = f" in {c.elapsed_ms:.0f} ms" if c.elapsed_ms is not None else ""
        fields.append(("last command", Text(
            f"{clock_text(c.ts)} {c.label}: {c.status}{ms}"
            + (f" ({c.detail})" if c.detail else ""), style=word_style(w, c.status))))
    return fields


def _pos(lat: object, lon: object, alt: object) -> str:
    p = geo.valid(lat, lon)
    if p is None:
        return NONE
    alt_text = f", {number(alt, '.0f', ' m')}" if alt is not None else ""
    return f"{p[0]:.6f}, {p[1]:.6f}{alt_text}"
