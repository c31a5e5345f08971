"""The top line: the vehicle, whether the bus is there, counts, recording, and the time."""

from __future__ import annotations

from rich.style import Style
from rich.text import Text
from textual.widget import Widget

from edge.bus.mirror import STALE_S
from ui.format import age_text, bytes_text, clock_text
from ui.replay import speed_text
from ui.state import DashboardState
from ui.widgets.parts import PART_CLASSES, part


class StatusBar(Widget):
    # A Widget that renders its text rather than a Static: Static.update() asks for
    # a layout of the whole screen, and this line changes every second.
    COMPONENT_CLASSES = PART_CLASSES

    def __init__(self, **kwargs: str) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._key: tuple[object, ...] | None = None
        self._text = Text("")

    def render(self) -> Text:
        return self._text

    def sync(self, state: DashboardState, now: float, unsent_marks: int = 0) -> None:
        bus = state.bus
        age = state.bus_age(state.wall_now())
        cams = list(state.cameras.values())
        live = sum(c.condition(now)[0] == "live" for c in cams)
        drones = [d for d in state.drones.values() if not d.placeholder]
        drones_up = sum(d.condition(now) in ("live", "connecting") for d in drones)
        services = list(state.services.values())
        svc_ok = sum(s.age(now) <= STALE_S and s.message.state == "running" for s in services)
        lost = bus.connected is False
        rec = recording(state, now)
        replay = replay_text(state, now)
        key = (lost, bus.connected, int(age) if age is not None else None, live, len(cams),
               drones_up, len(drones), svc_ok, len(services), int(now), unsent_marks,
               bus.reconnects, rec, replay)
        if key == self._key:
            return
        self._key = key
        self.set_class(lost, "-lost")
        self.set_class(bus.connected is None, "-waiting")
        sep = (" │ ", part(self, "muted"))
        vehicle = (f"EDGE {state.vehicle}".strip(), part(self, "name"))
        clock = (clock_text(now), "") if replay is None else (replay, part(self, "accent"))
        unsent: list[tuple[str, str | Style]] = (
            [sep, (f"{unsent_marks} mark(s) unsent", part(self, "name" if lost else "warn"))]
            if unsent_marks else [])
        if lost:
            how_long = age_text(age) if age is not None else "ever"
            text = Text.assemble(
                vehicle, sep,
                (f"BUS GONE (no heartbeat for {how_long})", part(self, "name")),
                " reconnecting… values are last known", *unsent, sep, clock)
        else:
            if bus.connected is None:
                bus_part = ("bus: connecting…", part(self, "warn"))
            else:
                bus_part = ("bus ● ok", part(self, "ok"))
            svc_style = part(self, "ok") if svc_ok == len(services) else part(self, "warn")
            parts: list[tuple[str, str | Style]] = [vehicle, sep, bus_part, sep,
                     (f"cams {live}/{len(cams)} live", part(self, "ok" if live == len(cams)
                                                             else "warn")), sep,
                     (f"drones {drones_up}/{len(drones)}", ""), sep,
                     (f"svc {svc_ok}/{len(services)}", svc_style), *unsent]
            if rec is not None:
                parts += [sep, (rec[0], part(self, rec[1]))]
            text = Text.assemble(*parts, sep, clock)
        text.no_wrap = True
        text.overflow = "ellipsis"
        self._text = text
        self.refresh()




def replay_text(state: DashboardState, now: float) -> str | None:
    """The replay clock ("REPLAY 14:03:22 ×4", "… paused"); None outside a replay."""
    status = state.replay.status
    if status is None:
        return None
    how = speed_text(status) + ("" if status.state == "playing" else f" {status.state}"[:13])
    keyframes = " keyframes only" if status.keyframes_only else ""
    return f"REPLAY {clock_text(now)} {how}{keyframes}"


def recording(state: DashboardState, now: float) -> tuple[str, str] | None:
    """What the recorder is doing, in a few words and a part name; None if none expected."""
    heard = state.mirror.recorder
    if heard is None:
        return ("rec: not heard yet", "warn") if state.recorder_expected else None
    msg, age = heard.message, heard.age(now)
    if age > STALE_S:
        return (f"REC? recorder silent {age_text(age)}", "warn")
    disk = f"{bytes_text(msg.bytes_on_disk)}, {msg.free_percent:.0f}% free"
    if not msg.recording:
        why = msg.last_error or "not recording"
        return (f"REC ✗ {why[:60]} ({disk})", "bad")
    session = f" {msg.session_name[:40]!r}" if msg.session_id is not None else ""
    return (f"● REC{session} {disk}", "critical")
