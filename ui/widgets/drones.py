"""The drone pane: one row a drone; the keys for the drone commands live here."""

from __future__ import annotations

from rich.text import Text
from textual.binding import Binding

from ui.format import NONE, age_text, clean, distance_text, finite, number
from ui.requests import CommandDrone, OpenDrone
from ui.state import DashboardState, DroneView
from ui.widgets.parts import aged, battery_style, part, word_style
from ui.widgets.table import Row, SyncedTable

MODE_WIDTH = 8
LOST_LABEL = {"lost": "LOST", "silent": "SILENT"}  # a drone not to be trusted
# MAVLink's GPS_FIX_TYPE names, short enough for the column; how good each is.
GPS_SHORT = {"NO_GPS": ("none", "bad"), "NO_FIX": ("nofix", "bad"), "2D_FIX": ("2D", "warn"),
             "3D_FIX": ("3D", "ok"), "DGPS": ("DGPS", "ok"), "RTK_FLOAT": ("RTKf", "ok"),
             "RTK_FIXED": ("RTK", "ok"), "STATIC": ("stat", "ok"), "PPP": ("PPP", "ok")}


def gps_text(fix: object) -> tuple[str, str]:
    """(short text, part) for a fix type name as the drone service spells it."""
    name = clean(fix, 24).upper().removeprefix("GPS_FIX_TYPE_")
    if name in GPS_SHORT:
        return GPS_SHORT[name]
    return (name[:5] or NONE), "muted"


class DroneTable(SyncedTable):
    COLUMNS = (("drone", "Drone", 9), ("mode", "Mode", MODE_WIDTH), ("armed", "Arm", 3),
               ("alt", "Alt m", 5), ("gs", "m/s", 4), ("bat", "Bat", 4), ("gps", "GPS", 6),
               ("link", "Link", 4), ("dist", "Dist", 6), ("age", "Age", 4))
    BINDINGS = [
        Binding("r", "command('rtl')", "RTL"),
        Binding("h", "command('hold')", "Hold"),
        Binding("l", "command('land')", "Land"),
        Binding("g", "command('goto')", "Go to"),
    ]

    def sync(self, state: DashboardState, now: float) -> None:
        self.sync_rows([drone_row(self, state, d, now) for d in state.drone_list()])

    def action_command(self, action: str) -> None:
        key = self.selected_key
        if key is not None:
            self.post_message(CommandDrone(key, action))

    def selected(self, key: str) -> None:
        self.post_message(OpenDrone(key))


def drone_row(table: SyncedTable, state: DashboardState, d: DroneView, now: float) -> Row:
    muted = part(table, "muted")
    if d.placeholder:
        head = (Text(d.drone_id, style=part(table, "name")), Text("no data", style=muted))
        rest = tuple(Text(NONE, style=muted) for _ in range(len(DroneTable.COLUMNS) - 2))
        return d.drone_id, head + rest
    cond = d.condition(now)
    s, t = d.status, d.telemetry
    s_age, t_age = d.status_age(now), d.telemetry_age(now)
    down = cond in LOST_LABEL
    name_style = word_style(table, cond) if down else part(table, "name")
    if down:
        mode = Text(LOST_LABEL[cond], style=word_style(table, cond))
    elif s is None:
        mode = Text(NONE, style=muted)
    else:
        mode = aged(table, clean(s.mode, 16) or clean(s.state, 16) or NONE, s_age)
    armed = (Text(NONE, style=muted) if s is None else
             aged(table, "ARM" if s.armed is True else "dis", s_age,
                  part(table, "warn") if s.armed is True else muted))
    alt = aged(table, number(None if t is None else t.alt_rel_m, ".0f"), t_age)
    gs = aged(table, number(None if t is None else t.groundspeed_mps, ".1f", lo=0), t_age)
    bat_pct = None if t is None else t.battery_pct
    bat = aged(table, number(bat_pct, ".0f", "%", lo=0, hi=100), t_age,
               battery_style(table, bat_pct))
    if t is None:
        gps = Text(NONE, style=muted)
    else:
        sats = t.satellites if isinstance(t.satellites, int) and 0 <= t.satellites < 100 else None
        fix, quality = gps_text(t.gps_fix)
        gps = aged(table, f"{fix} {sats}" if sats is not None else fix, t_age,
                   part(table, quality) if quality != "ok" else None)
    lq = None if s is None else finite(s.link_quality_pct)
    lq_style = (muted if lq is None else part(table, "bad") if lq < 50
                else part(table, "warn") if lq < 80 else part(table, "ok"))
    link = aged(table, number(lq, ".0f", "%", lo=0, hi=100), s_age, lq_style)
    dist = aged(table, distance_text(state.distance_m(d)), t_age)
    age = d.message_age(now)
    cells = (Text(d.drone_id, style=name_style), mode, armed, alt, gs, bat, gps, link, dist,
             aged(table, age_text(age), age))
    return d.drone_id, cells
