"""One camera: its full status, a larger thumbnail, and steering it (ONVIF, GB/T 28181).

Arrows pan and tilt while held, `+`/`-` zoom a step, 1-9 go to a preset, shift+1-9
store one (confirmed), 0 goes home: :mod:`ui.ptz` decides what goes out and when;
the app sends it (:class:`~ui.requests.SteerCamera`). A refusal is a notification
with the camera service's reason; the "control" field shows who steers the camera
(`cam/<id>/control`).
"""

from __future__ import annotations

import time
from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.widgets import Footer, Static

from edge.bus.messages import PtzCommand, Reply
from ui import geo
from ui.format import NONE, age_text, clean, clock_text, distance_text, number, rate_text
from ui.ptz import (
    CONTINUOUS,
    PRESETS,
    SHIFTED_DIGITS,
    Arrow,
    ArrowHold,
    Outbox,
    control_text,
    go_to_preset,
    home,
    refusal,
    set_preset,
    zoom,
)
from ui.requests import SteerCamera
from ui.screens.detail import DetailScreen
from ui.severity import REPLY_SEVERITY, notify_level
from ui.state import CameraView, DashboardState
from ui.widgets.cameras import STATE_LABEL
from ui.widgets.detail import Field, FieldList, ThumbView
from ui.widgets.parts import aged, part, word_style

# How often a held arrow is looked at (ui/ptz.py: renewed every 250 ms, let go after 300).
HOLD_TICK_S = 0.05
# A held arrow's moves and stops refused for one reason are told once in this time.
TELL_AGAIN_S = 10.0


class CameraScreen(DetailScreen):
    # The arrows are the screen's before anything focused has them; the app's own
    # left/right (a replay's seek) pass them on outside the main screen.
    BINDINGS: ClassVar[list[BindingType]] = [
        *DetailScreen.BINDINGS,
        *(Binding(arrow, f"arrow('{arrow}')", f"{arrow} (hold)", show=False, priority=True)
          for arrow in ("left", "right", "up", "down")),
        Binding("plus,equals_sign", "zoom(1)", "Zoom in"),
        Binding("minus", "zoom(-1)", "Zoom out"),
        Binding("0", "home", "Home"),
        *(Binding(str(n), f"preset({n})", f"Preset {n}", show=False) for n in PRESETS),
        *(Binding(key, f"store_preset({n})", f"Store preset {n}", show=False)
          for n, key in zip(PRESETS, SHIFTED_DIGITS, strict=True)),
    ]

    def __init__(self, state: DashboardState, camera_id: str) -> None:
        super().__init__(state, camera_id)
        self.camera_id = camera_id
        self.hold = ArrowHold()
        self.outbox = Outbox()
        # Our last refused request, in words, and when (wall clock).
        self.refused: tuple[str, float] | None = None
        self.who = ""  # this dashboard's name as a holder, once a request went out
        # The last refusal of a move or stop notified, and when (monotonic): a held arrow
        # renews its move four times a second, and each would be refused alike.
        self._told: tuple[str, float] = ("", 0.0)

    def on_mount(self) -> None:
        super().on_mount()
        self.set_interval(HOLD_TICK_S, self._tick)

    def compose(self) -> ComposeResult:
        yield Static(id="detail-title")
        with Horizontal(id="detail-body"):
            yield ThumbView(id="big-thumb")
            yield FieldList(id="fields")
        yield Footer()

    def refresh_view(self) -> None:
        view = self.state.cameras.get(self.camera_id)
        if view is None:
            return
        now = self.state.now()
        state, _ = view.condition(now)
        title = self.query_one("#detail-title", Static)
        title.update(Text.assemble((f"Camera {view.name} ", "bold"), (f"({view.camera_id})  ", ""),
                                   (STATE_LABEL[state], word_style(self.query_one(FieldList),
                                                                   state))))
        self.query_one(ThumbView).show(view.thumb, view.thumb_error or "no picture")
        fields = self.query_one(FieldList)
        fields.show(camera_fields(fields, view, self.state, now) + self.control_fields(fields))

    def control_fields(self, w: FieldList) -> list[Field]:
        status = self.state.control(self.camera_id)
        rows: list[Field] = [("control", Text(control_text(status, self.state.wall_now(),
                                                           self.who)))]
        said = clean(status.reason, 200) if status is not None and status.kind else ""
        if said:
            rows.append(("camera said", Text(said, style=part(w, "warn"))))
        if self.refused is not None:
            text, at = self.refused
            rows.append(("refused", Text(f"{clock_text(at)} {text}", style=part(w, "warn"))))
        return rows

    # -- steering ----------------------------------------------------------------------
    def action_arrow(self, arrow: Arrow) -> None:
        if self._replayed():
            return
        command = self.hold.press(arrow, time.monotonic())
        if command is not None:
            self._send(command)

    def action_zoom(self, direction: int) -> None:
        self._key(zoom(direction))

    def action_home(self) -> None:
        self._key(home())

    def action_preset(self, number: int) -> None:
        self._key(go_to_preset(number))

    def action_store_preset(self, number: int) -> None:
        self._key(set_preset(number))

    def action_back(self) -> None:
        self._let_go()
        super().action_back()

    def on_screen_suspend(self) -> None:
        # A dialog or help over this view takes the keys: a held arrow's repeats stop
        # coming, and the camera must not wait for the dead-man stop.
        self._let_go()

    def on_unmount(self) -> None:
        self._let_go()

    def _key(self, command: PtzCommand) -> None:
        """A key other than an arrow: a move held until now stops first."""
        if self._replayed():
            return
        self._let_go()
        self._send(command)

    def _replayed(self) -> bool:
        """In a replay (edge replay) there is no camera to steer: say so, send nothing."""
        if not self.state.replay.active:
            return False
        self.notify("A replay: its cameras are only watched, not steered.", timeout=3)
        return True

    def _tick(self) -> None:
        command = self.hold.tick(time.monotonic())
        if command is not None:
            self._send(command)

    def _let_go(self) -> None:
        command = self.hold.let_go()
        if command is not None:
            self._send(command)

    def _send(self, command: PtzCommand) -> None:
        now = self.outbox.put(command)
        if now is not None:
            self._post(now)

    def _post(self, command: PtzCommand) -> None:
        message = SteerCamera(self.camera_id, command,
                              lambda reply: self._answered(command, reply),
                              confirm=command.action == "set_preset")
        # Through the app itself: a view being closed no longer passes messages up.
        self.app.post_message(message)

    def _answered(self, command: PtzCommand, reply: Reply | None) -> None:
        following = self.outbox.done()
        if following is not None:
            self._post(following)
        if reply is None:
            return  # cancelled at the confirmation: nothing was sent
        self.who = command.who
        text = refusal(command, reply)
        if text is None:
            return
        self.refused = (text, self.state.wall_now())
        if command.action in CONTINUOUS:
            why, now = f"{reply.status}: {reply.detail}", time.monotonic()
            if why == self._told[0] and now - self._told[1] < TELL_AGAIN_S:
                return
            self._told = (why, now)
        if command.action == "set_preset":
            return  # the confirmed command's flow has notified already
        severity = REPLY_SEVERITY.get(reply.status, "error")
        self.state.add_event(severity, self.camera_id, text)
        view = self.state.cameras.get(self.camera_id)
        name = view.name if view is not None and view.name else self.camera_id
        self.notify(text, title=f"camera {name}", severity=notify_level(severity), timeout=6)


def camera_fields(w: FieldList, view: CameraView, dashboard: DashboardState,
                  now: float) -> list[Field]:
    s = view.status
    state, reason = view.condition(now)
    age = view.status_age(now)
    fields: list[Field] = [
        ("state", Text(STATE_LABEL[state], style=word_style(w, state))),
        ("reason", Text(reason or NONE)),
        ("status age", aged(w, age_text(age), age)),
    ]
    if s is not None:
        frame_age = view.frame_age(now)
        pos = geo.valid(s.lat, s.lon)
        dist = (geo.haversine_m(dashboard.position, pos)
                if pos is not None and dashboard.position is not None else None)
        size = (f"{s.width}x{s.height}" if isinstance(s.width, int) and isinstance(s.height, int)
                and s.width > 0 and s.height > 0 else NONE)
        fields += [
            ("codec", aged(w, " ".join(x for x in (clean(s.codec, 16), clean(s.profile, 16))
                                       if x) or NONE, age)),
            ("size", aged(w, size, age)),
            ("fps", aged(w, number(s.fps, ".1f", lo=0), age)),
            ("bit rate", aged(w, f"{rate_text(s.kbps)}bit/s", age)),
            ("GOP", aged(w, number(s.gop, ".0f", lo=0), age)),
            ("last frame", aged(w, age_text(frame_age), frame_age)),
            ("frames", aged(w, number(s.frames, ".0f"), age)),
            ("dropped", aged(w, number(s.dropped, ".0f"), age)),
            ("reconnects", aged(w, number(s.reconnects, ".0f"), age)),
            ("position", Text(f"{pos[0]:.5f}, {pos[1]:.5f}" if pos else NONE)),
            ("from vehicle", Text(distance_text(dist))),
        ]
    thumb = view.thumb
    if thumb is not None:
        captured = thumb.captured_ts
        fields.append(("thumbnail", Text(
            f"{thumb.pixels.shape[1]}x{thumb.pixels.shape[0]}, "
            f"taken {clock_text(captured)}" if captured else
            f"{thumb.pixels.shape[1]}x{thumb.pixels.shape[0]}")))
    if view.thumb_error:
        fields.append(("thumbnail error", Text(view.thumb_error, style=part(w, "warn"))))
    return fields
