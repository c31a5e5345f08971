"""The WAN link pane: every configured link, and any other the bus reports."""

from __future__ import annotations

from rich.text import Text

from edge.bus.messages import LINK_STATES
from edge.bus.mirror import age_of, known
from ui.format import NONE, clean, number, rate_text
from ui.state import DashboardState, LinkView
from ui.widgets.parts import aged, part, word_style
from ui.widgets.table import Row, SyncedTable


class LinkTable(SyncedTable):
    COLUMNS = (("name", "Link", 9), ("state", "State", 7), ("rtt", "RTT", 5), ("loss", "Loss", 5),
               ("rate", "↑/↓ bit/s", 9))

    def sync(self, state: DashboardState, now: float) -> None:
        self.sync_rows([link_row(self, v, now) for v in state.links.values()])


def link_row(table: SyncedTable, v: LinkView, now: float) -> Row:
    muted = part(table, "muted")
    s = v.status
    name = Text(v.name, style=part(table, "name"))
    if s is None:
        return v.link_id, (name, Text("no data", style=muted), Text(NONE, style=muted),
                           Text(NONE, style=muted), Text(NONE, style=muted))
    age = age_of(v.status_ts, now)
    st = clean(s.state, 10).lower() or "unknown"
    state = aged(table, st, age, word_style(table, known(st, LINK_STATES) or "unknown"))
    if st == "down":
        name = Text(v.name, style=part(table, "down"))
    rate = f"{rate_text(s.tx_kbps)}/{rate_text(s.rx_kbps)}"
    return v.link_id, (name, state, aged(table, number(s.rtt_ms, ".0f", "ms", lo=0), age),
                       aged(table, number(s.loss_pct, ".1f", "%", lo=0, hi=100), age),
                       aged(table, rate, age))
