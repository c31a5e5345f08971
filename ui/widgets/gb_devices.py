"""The GB/T 28181 pane: every device the gb28181 service reports (state and why, where its
SIP comes from), its channels beneath it, and which channel is a camera already; `a` on a
channel that is not adopts it as a camera (confirmed; the gb28181 service writes it to the
vehicle's config).

Shown when the config enables `[gb28181]` or a device is heard: a vehicle without dome
cameras keeps the room for its events. On a short terminal (under 34 rows: 80x24) it is one
line, its title and a count of its devices, until it has the focus (its key, or tab): the
event log needs those rows more than a list of devices does most of the time."""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.binding import Binding
from textual.message import Message

from edge.bus.messages import GB_DEVICE_STATES, GbChannel, GbDeviceStatus
from edge.bus.mirror import SILENT_S, Heard, age_of, known
from ui.format import NONE, age_text, clean, clock_text
from ui.state import DashboardState
from ui.widgets.parts import aged, part
from ui.widgets.table import Row, SyncedTable

# The pane's rows at most before it scrolls (a device and its channels each take one).
MAX_VISIBLE_ROWS = 6
# The device's words in the stylesheet's parts (ui/severity.py's PART has no GB words yet).
GB_PART = {"online": "ok", "offline": "down", "refused": "bad", "silent": "down",
           "unknown": "muted"}
CHANNEL_SEP = "/"  # a channel row's key: "<device id>/<channel id>"


@dataclass
class OpenGbDevice(Message):
    """Everything the gb28181 service says about a device, in a dialog."""

    device_id: str


@dataclass
class AdoptGbChannel(Message):
    """Make a device's channel a camera (`channel_id` "": the cursor is on the device's own
    row); the app asks for the camera's id and name, confirms, and asks gb28181."""

    device_id: str
    channel_id: str


def gb_condition(heard: Heard[GbDeviceStatus], now: float) -> str:
    """online | offline | refused, or silent (the gb28181 service said nothing lately) or
    unknown (a word this dashboard does not know)."""
    age = age_of(heard.ts, now)
    if age is not None and age > SILENT_S:
        return "silent"
    return known(heard.message.state, GB_DEVICE_STATES) or "unknown"


def device_name(status: GbDeviceStatus) -> str:
    return clean(status.name, 64).strip() or "GB device"


def channel_name(channel: GbChannel) -> str:
    return clean(channel.name, 64).strip() or clean(channel.channel_id, 20)


def channel_word(channel: GbChannel) -> tuple[str, str]:
    """(word, part) for a channel's status as its device says it: ON/OFF, or ONLINE/OFFLINE."""
    word = clean(channel.status, 10).strip().lower()
    if word in ("on", "online"):
        return "on", "ok"
    if word in ("off", "offline"):
        return "off", "warn"
    return (word or NONE), "muted"


def split_key(key: str) -> tuple[str, str]:
    """(device id, channel id) of a row's key; the channel id is "" on a device's row."""
    device_id, _, channel_id = key.partition(CHANNEL_SEP)
    return device_id, channel_id


class GbDeviceTable(SyncedTable):
    COLUMNS = (("name", "GB device / channel", 18), ("id", "Id", 20), ("state", "State", 7),
               ("detail", "Address / camera", 18))
    FILL_LAST = True
    BINDINGS = [Binding("a", "adopt", "Adopt")]

    def __init__(self, label: str = "GB/T 28181 devices", **kwargs: str) -> None:
        super().__init__(**kwargs)
        self.label = label  # the title; a count of the devices by state follows it

    def on_mount(self) -> None:
        self._fit()

    # Textual calls SyncedTable's own focus handlers too (it dispatches along the MRO).
    def on_focus(self) -> None:
        self._fit()

    def on_blur(self) -> None:
        self._fit()

    def _fit(self) -> None:
        """Its height: the title line alone on a short screen unless focused, else its rows
        (set here rather than in the stylesheet: app.tcss gives every table
        `max-height: 100%`, and the focus decides)."""
        short = self.screen.has_class("-short") and not self.has_focus
        rows = 1 if short else MAX_VISIBLE_ROWS + 2  # the border's line, the header, rows
        if self.styles.max_height is None or self.styles.max_height.value != rows:
            self.styles.max_height = rows

    def sync(self, state: DashboardState, now: float) -> None:
        show = state.gb_expected or bool(state.gb_devices)
        if self.display != show:
            self.display = show
        if not show:
            return
        self._fit()
        rows: list[Row] = []
        for device_id in sorted(state.gb_devices):
            rows += device_rows(self, state, device_id, now)
        if not rows:
            muted = part(self, "muted")
            rows = [("-", (Text("no device heard", style=muted), Text(""), Text(""),
                           Text("the gb28181 service reports them", style=muted)))]
        self.sync_rows(rows)
        # In the title: the panes have no bottom border for a subtitle.
        title = f"{self.label}: {gb_summary(state, now)}"
        if self.border_title != title:
            self.border_title = title  # setting it, even to the same text, repaints

    def action_adopt(self) -> None:
        key = self.selected_key
        if key is not None and key != "-":
            self.post_message(AdoptGbChannel(*split_key(key)))

    def selected(self, key: str) -> None:
        if key != "-":
            self.post_message(OpenGbDevice(split_key(key)[0]))


def gb_summary(state: DashboardState, now: float) -> str:
    """How many devices are in each state, and how many channels are not cameras yet."""
    counts: dict[str, int] = {}
    spare = 0
    for device_id, heard in state.gb_devices.items():
        cond = gb_condition(heard, now)
        counts[cond] = counts.get(cond, 0) + 1
        spare += sum(1 for c in heard.message.channels
                     if (device_id, c.channel_id) not in state.gb_cameras)
    parts = [f"{counts[cond]} {cond}" for cond in GB_PART if cond in counts]
    if spare:
        parts.append(f"{spare} channel{'s' if spare != 1 else ''} not a camera")
    return " · ".join(parts) or "no device heard"


def device_rows(table: SyncedTable, state: DashboardState, device_id: str,
                now: float) -> list[Row]:
    heard = state.gb_devices[device_id]
    s = heard.message
    age = age_of(heard.ts, now)
    cond = gb_condition(heard, now)
    cond_style = part(table, GB_PART.get(cond, "muted"))
    if cond == "online":
        where = f"{clean(s.address, 60)} {clean(s.transport, 8).upper()}".strip()
        if s.sessions:
            where += f" · {s.sessions} stream{'s' if s.sessions != 1 else ''}"
    elif cond == "silent":
        where = f"no status for {age_text(age)}"
    else:
        where = clean(s.reason, 200) or NONE
    rows: list[Row] = [(device_id, (
        Text(device_name(s), style=part(table, "name")),
        aged(table, clean(device_id, 20), age),
        aged(table, cond, age, cond_style),
        aged(table, where, age, None if cond == "online" else cond_style)))]
    muted = part(table, "muted")
    for channel in s.channels:
        channel_id = clean(channel.channel_id, 20)
        camera = state.gb_cameras.get((device_id, channel.channel_id))
        word, word_part = channel_word(channel)
        detail = (Text(f"camera {camera}", style=part(table, "ok")) if camera is not None else
                  Text("not a camera (a adopts)", style=muted))
        rows.append((f"{device_id}{CHANNEL_SEP}{channel.channel_id}", (
            Text.assemble((" └ ", muted), channel_name(channel)),
            aged(table, channel_id, age),
            aged(table, word, age, part(table, word_part)),
            detail)))
    return rows


def gb_device_text(state: DashboardState, device_id: str) -> str:
    """Every figure of a device, as lines, for its dialog."""
    heard = state.gb_devices.get(device_id)
    if heard is None:
        return f"{device_id}: nothing heard from the gb28181 service about it."
    s, now = heard.message, state.now()
    cond = gb_condition(heard, now)
    reason = clean(s.reason, 200)
    lines = [f"{device_name(s)} ({clean(device_id, 20)}): {cond}" +
             (f": {reason}" if reason and cond != "online" else "")]
    if s.address:
        lines.append(f"SIP from {clean(s.address, 60)} over "
                     f"{clean(s.transport, 8).upper() or NONE}")
    made = " ".join(clean(v, 40) for v in (s.manufacturer, s.model) if v)
    if made or s.firmware:
        lines.append(f"{made or 'Unknown make'}" +
                     (f", firmware {clean(s.firmware, 40)}" if s.firmware else ""))
    if s.registered_ns > 0:
        lines.append(f"Registered at {clock_text(s.registered_ns / 1e9)}, "
                     f"{s.keepalives} keepalive{'s' if s.keepalives != 1 else ''}" +
                     (f", the last at {clock_text(s.last_keepalive_ns / 1e9)}"
                      if s.last_keepalive_ns > 0 else ""))
    lines.append(f"Live video sessions: {s.sessions}")
    lines.append(f"Status {age_text(age_of(heard.ts, now))} old.")
    for channel in s.channels:
        camera = state.gb_cameras.get((device_id, channel.channel_id))
        lines.append(f"  {channel_name(channel)} ({clean(channel.channel_id, 20)}), "
                     f"{channel_word(channel)[0]}: " +
                     (f"camera {camera}" if camera is not None else "not a camera"))
    if not s.channels:
        lines.append("No channels: its catalog has not come (it is asked after each "
                     "registration).")
    lines.append("a on a channel's row adopts it as a camera (written to the vehicle's "
                 "config).")
    return "\n".join(lines)
