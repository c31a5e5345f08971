"""One camera: its full status and a larger thumbnail."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Footer, Static

from ui import geo
from ui.format import NONE, age_text, clean, clock_text, distance_text, number, rate_text
from ui.screens.detail import DetailScreen
from ui.state import CameraView, DashboardState
from ui.widgets.cameras import STATE_LABEL
from ui.widgets.detail import Field, FieldList, ThumbView
from ui.widgets.parts import aged, part, word_style


class CameraScreen(DetailScreen):
    def __init__(self, state: DashboardState, camera_id: str) -> None:
        super().__init__(state, camera_id)
        self.camera_id = camera_id

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
        self.query_one(FieldList).show(camera_fields(self.query_one(FieldList), view,
                                                     self.state, now))


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
