"""The WAN link pane: every configured link, and any other the bus reports; the keys that
force the tunnel to the centre onto a link, or give the choice back, live here."""

from __future__ import annotations

from rich.text import Text
from textual.binding import Binding

from edge.bus.messages import LINK_STATES, LinkStatus
from edge.bus.mirror import age_of, known
from ui.format import NONE, clean, number, rate_text
from ui.requests import CommandLink, OpenLink
from ui.state import DashboardState, LinkView
from ui.widgets.parts import aged, part, word_style
from ui.widgets.table import Row, SyncedTable

# Shown instead of a state for a link the links service cannot measure (no interface
# on this vehicle, no privileges): its detail says why, in the link's detail line.
UNMEASURABLE = "unmeasurable"


class LinkTable(SyncedTable):
    # The link that carries the tunnel to the centre is marked in its name (● or, when
    # forced, F●); a metered link's data used is in its detail (enter) and in alerts at
    # 80% and 100%: the pane has no room for more at 80 columns.
    COLUMNS = (("name", "Link", 9), ("state", "State", 7), ("rtt", "RTT", 5), ("loss", "Loss", 5),
               ("rate", "↑/↓ bit/s", 9))
    BINDINGS = [
        Binding("f", "command('force')", "Force link"),
        Binding("a", "command('release')", "Auto link"),
    ]

    def sync(self, state: DashboardState, now: float) -> None:
        self.sync_rows([link_row(self, v, now) for v in state.links.values()])

    def action_command(self, action: str) -> None:
        key = self.selected_key
        if key is not None:
            self.post_message(CommandLink(key, action))

    def selected(self, key: str) -> None:
        self.post_message(OpenLink(key))


def link_text(v: LinkView) -> str:
    """Every figure of a link, and what the links service says about it, as lines."""
    s = v.status
    if s is None:
        return f"{v.name} ({v.link_id}): no status from the links service yet."
    lines = [f"{v.name} ({v.link_id}, {clean(s.kind, 20) or v.kind or 'link'}): "
             f"{clean(s.state, 10)}" + (f": {clean(s.detail)}" if s.detail else "")]
    if s.active:
        lines.append("Carries the tunnel to the centre" + (" (forced)" if s.forced else "."))
    lines.append(f"RTT {number(s.rtt_ms, '.0f', ' ms', lo=0)} (p95 "
                 f"{number(s.rtt_p95_ms, '.0f', ' ms', lo=0)}), jitter "
                 f"{number(s.jitter_ms, '.0f', ' ms', lo=0)}, loss "
                 f"{number(s.loss_pct, '.1f', '%', lo=0, hi=100)}")
    lines.append(f"Up {rate_text(s.tx_kbps)}bit/s, down {rate_text(s.rx_kbps)}bit/s")
    for what, used, budget in (("today", s.used_today_mb, s.budget_today_mb),
                               ("this incident", s.used_incident_mb, s.budget_incident_mb)):
        if used is not None and budget:
            lines.append(f"Data {what}: {used:.0f} of {budget:.0f} MB")
    lines.append("f: carry the tunnel over this link; a: let the policy choose again.")
    return "\n".join(lines)


def tunnel_mark(s: LinkStatus) -> str:
    """● for the link that carries the tunnel to the centre, F● when the commander forced it."""
    if not s.active:
        return ""
    return "F●" if s.forced else "●"


def link_row(table: SyncedTable, v: LinkView, now: float) -> Row:
    muted = part(table, "muted")
    s = v.status
    name = Text(v.name, style=part(table, "name"))
    if s is None:
        return v.link_id, (name, Text("no data", style=muted),
                           *(Text(NONE, style=muted) for _ in LinkTable.COLUMNS[2:]))
    age = age_of(v.status_ts, now)
    st = clean(s.state, 10).lower() or "unknown"
    if st == "unknown" and s.detail.startswith(UNMEASURABLE):
        state = aged(table, "n/m", age, muted)  # not measured, not a fault of the link
    else:
        state = aged(table, st, age, word_style(table, known(st, LINK_STATES) or "unknown"))
    mark = tunnel_mark(s)
    name_style = part(table, "down") if st == "down" else part(table, "name")
    name = Text.assemble((mark, part(table, "warn") if s.forced else part(table, "ok")),
                         " " if mark else "", (v.name, name_style))
    rate = f"{rate_text(s.tx_kbps)}/{rate_text(s.rx_kbps)}"
    return v.link_id, (name, state, aged(table, number(s.rtt_ms, ".0f", "ms", lo=0), age),
                       aged(table, number(s.loss_pct, ".1f", "%", lo=0, hi=100), age),
                       aged(table, rate, age))
