"""The camera pane: a grid of tiles, one a camera, each with a live half-block thumbnail."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.binding import Binding
from textual.containers import ScrollableContainer
from textual.geometry import Region
from textual.strip import Strip
from textual.widget import Widget

from edge.bus.messages import PUSH_STATES, PushFeed
from edge.bus.mirror import CameraCondition, Freshness, freshness, known
from ui import thumbnail
from ui.format import NONE, age_text, finite, number, rate_text
from ui.requests import CommandPush, OpenCamera
from ui.state import CameraView, DashboardState, Thumb
from ui.widgets import parts
from ui.widgets.parts import PART_CLASSES, aged, part, text_strip, word_style

TILE_MIN_WIDTH = 19
TILE_MIN_HEIGHT = 6
AUTO_SHARE = 0.55  # of the screen's height, for a grid sized by its tiles
TEXT_ROWS = 3
STATE_LABEL: dict[CameraCondition, str] = {
    "live": "LIVE", "connecting": "CONNECTING", "standby": "STANDBY", "down": "DOWN",
    "silent": "SILENT", "unknown": "NO DATA"}
DOT = "●"
PUSH_MARK = "↑"
# A tile's background: (state, selected) as the grid's component styles.
TILE_CLASSES = {"part--tile-normal", "part--tile-connecting", "part--tile-down",
                "part--tile-selected", "part--tile-down-selected"}


class ThumbCache:
    """Half-block lines of one thumbnail at one size, rebuilt only when either changes."""

    def __init__(self) -> None:
        self._key: tuple[int, int, int, int] | None = None
        self._lines: list[list[Segment]] = []

    def lines(self, thumb: Thumb | None, cols: int, rows: int) -> list[list[Segment]]:
        key = (id(thumb), thumb.rev if thumb else 0, cols, rows)
        if key != self._key:
            self._key = key
            self._lines = thumbnail.halfblocks(thumb.pixels if thumb else None, cols, rows)
        return self._lines


class CameraTile(Widget):
    """One camera: name, state, fps, bit rate, frame age, and its picture.

    Its state and selection show as its background, drawn from the grid's
    ``tile--*`` styles rather than by CSS classes on the tile: a class change
    restyles the widget through the whole stylesheet, and with cameras going
    up and down that was most of the dashboard's CPU time."""

    def __init__(self, camera_id: str, grid: Widget) -> None:
        super().__init__()
        self.camera_id = camera_id
        self.grid = grid
        self.shown_state = "unknown"
        self._text_key: tuple[object, ...] | None = None
        self._picture_key: tuple[object, ...] | None = None
        self._text: list[Strip] = []
        self._picture: list[Strip] = []
        self._thumbs = ThumbCache()
        self._last: tuple[CameraView, float, bool] | None = None
        self._push = ""
        # The dashboard's clock (the replay's, in a replay), set by the grid: a redraw
        # after a resize reads it afresh rather than the time of the last sync.
        self.clock: Callable[[], float] | None = None

    def sync(self, view: CameraView, now: float, selected: bool, push: str = "") -> None:
        """Redraw what changed: the text rows (once a second at most, as values change)
        and the picture (when a new thumbnail arrives) are refreshed separately. `push`:
        the state of its push to the centre ("" when it is not pushed)."""
        self._last = (view, now, selected)
        self._push = push
        shown = tile_content(view, now, push)
        thumb = view.thumb
        width, height = self.size
        look = tile_look(shown.state, selected)
        text_key = (shown, look, self.size, parts.generation)
        picture_key = (id(thumb), thumb.rev if thumb else 0, shown.thumb_note, look, self.size,
                       parts.generation)
        self.shown_state = shown.state
        if text_key == self._text_key and picture_key == self._picture_key:
            return  # the usual case: nothing it shows has changed
        base = self.rich_style + part(self.grid, f"tile-{look}", blended=True)
        dirty = []
        if text_key != self._text_key:
            self._text_key = text_key
            self._text = self._build_text(shown, base, width)
            dirty.append(Region(0, 0, width, TEXT_ROWS))
        if picture_key != self._picture_key:
            self._picture_key = picture_key
            self._picture = self._build_picture(shown, thumb, base, width,
                                                max(0, height - TEXT_ROWS))
            dirty.append(Region(0, TEXT_ROWS, width, max(0, height - TEXT_ROWS)))
        self.refresh(*dirty)

    def _part(self, name: str) -> Style:
        return part(self.grid, name)

    def _build_text(self, shown: TileContent, base: Style, width: int) -> list[Strip]:
        if width <= 0:
            return []
        state = shown.state
        # Pushed to the centre: an arrow after the name, in the push's colour (the uplink
        # pane says more), so that the commander sees what goes up over the link.
        mark = (f" {PUSH_MARK}", word_style(self.grid, shown.push)) if shown.push else ("", "")
        lines = [text_strip(Text.assemble((DOT + " ", word_style(self.grid, state)),
                                          (shown.name, self._part("name")), mark),
                            width, base)]
        label = STATE_LABEL[state]
        if state in ("down", "silent"):
            line1 = Text(f"{label} {shown.reason}".strip(), style=self._part("name"))
        else:
            line1 = Text.assemble((label, word_style(self.grid, state)),
                                  (f" {shown.reason}" if shown.reason else "",
                                   self._part("muted")))
        lines.append(text_strip(line1, width, base))
        if shown.fps is None:
            stats = Text("no data", style=self._part("muted"))
        else:
            stats = Text.assemble(
                aged(self.grid, f"{shown.fps}fps ", None, level=shown.status_level),
                aged(self.grid, f"{shown.kbps} ", None, level=shown.status_level),
                aged(self.grid, shown.frame_age, None, level=shown.frame_level),
            )
        lines.append(text_strip(stats, width, base))
        return lines

    def _build_picture(self, shown: TileContent, thumb: Thumb | None, base: Style,
                       width: int, rows: int) -> list[Strip]:
        if width <= 0 or rows <= 0:
            return []
        if thumb is None:
            pic = [Strip.blank(width, base)] * rows
            pic[rows // 2] = text_strip(
                Text(shown.thumb_note, style=self._part("muted"), justify="center"),
                width, base)
            return pic
        return [Strip(segs).adjust_cell_length(width).apply_style(base)
                for segs in self._thumbs.lines(thumb, width, rows)]

    def render_line(self, y: int) -> Strip:
        lines = self._text if y < TEXT_ROWS else self._picture
        i = y if y < TEXT_ROWS else y - TEXT_ROWS
        if i < len(lines):
            return lines[i]
        return Strip.blank(self.size.width, self.rich_style)

    def on_resize(self) -> None:
        if self._last is not None:
            # The size is part of both keys: everything is redrawn, at the time now. The
            # view has changed since the last sync (it is the live model), and a resize
            # (the replay's timeline bar appearing) showed its new status aged by the
            # old time: "SILENT no status for 3h" in a replay.
            view, now, selected = self._last
            self.sync(view, self.clock() if self.clock is not None else now, selected,
                      self._push)


def push_word(feed: PushFeed | None) -> str:
    """The tile's push mark's word: the feed's state while it is pushed, else ""."""
    if feed is None:
        return ""
    word = known(feed.state, PUSH_STATES)
    return "" if word == "idle" else word or "unknown"


def tile_look(state: str, selected: bool) -> str:
    """Which ``tile-*`` part is the tile's background."""
    down = state in ("down", "silent")
    if selected:
        return "down-selected" if down else "selected"
    return "down" if down else "connecting" if state == "connecting" else "normal"


class TileContent(NamedTuple):
    """Everything a tile shows, as plain values: equal contents, no redraw."""

    state: CameraCondition
    name: str
    reason: str
    fps: str | None  # None: no status yet
    kbps: str
    frame_age: str
    status_level: Freshness
    frame_level: Freshness
    thumb_note: str
    push: str = ""  # its push to the centre: connecting, live, retrying, failed; "": none


def tile_content(view: CameraView, now: float, push: str = "") -> TileContent:
    state, reason = view.condition(now)
    st = view.status
    note = view.thumb_error or "no picture"
    if st is None:
        return TileContent(state, view.name, reason, None, "", "", "none", "none", note, push)
    fps = finite(st.fps)
    frame_age = view.frame_age(now)
    return TileContent(
        state, view.name, reason,
        NONE if fps is None else f"{fps:.1f}" if 0 <= fps < 10 else number(fps),
        rate_text(st.kbps), age_text(frame_age), freshness(view.status_age(now)),
        # A camera let go while nobody watches has no frames by design: dim, not red.
        "stale" if state == "standby" and frame_age is not None else freshness(frame_age),
        note, push)


class CameraGrid(ScrollableContainer, can_focus=True):
    """Tiles for every camera the config names or the bus mentions; arrows move, enter opens."""

    COMPONENT_CLASSES = PART_CLASSES | TILE_CLASSES

    BINDINGS = [
        Binding("left", "move(-1, 0)", "Left", show=False),
        Binding("right", "move(1, 0)", "Right", show=False),
        Binding("up", "move(0, -1)", "Up", show=False),
        Binding("down", "move(0, 1)", "Down", show=False),
        Binding("enter", "open", "Open"),
        Binding("u", "push", "Push up"),
    ]

    def __init__(self, **kwargs: str) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.selected = 0
        self._tiles: dict[str, CameraTile] = {}
        self._columns = 1
        self._grid: tuple[int, int] = (0, 0)

    @property
    def selected_id(self) -> str | None:
        ids = list(self._tiles)
        return ids[self.selected] if 0 <= self.selected < len(ids) else None

    def sync(self, state: DashboardState, now: float) -> None:
        ids = list(state.cameras)
        if ids != list(self._tiles):
            self._rebuild(ids)
        for i, (cam_id, tile) in enumerate(self._tiles.items()):
            tile.clock = state.now
            tile.sync(state.cameras[cam_id], now, selected=i == self.selected and self.has_focus,
                      push=push_word(state.push_feed(cam_id)))

    def _rebuild(self, ids: list[str]) -> None:
        keep = self.selected_id
        for cam_id, tile in list(self._tiles.items()):
            if cam_id not in ids:
                tile.remove()
                del self._tiles[cam_id]
        new = [CameraTile(cam_id, self) for cam_id in ids if cam_id not in self._tiles]
        for tile in new:
            self._tiles[tile.camera_id] = tile
        if new:
            self.mount_all(new)
        # Config order first, then as discovered: the tiles' order is the state's.
        self._tiles = {cam_id: self._tiles[cam_id] for cam_id in ids}
        self.selected = ids.index(keep) if keep in ids else min(self.selected, len(ids) - 1)
        self.selected = max(0, self.selected)
        self._relayout()

    def on_resize(self) -> None:
        self._relayout()

    def _relayout(self) -> None:
        """As many columns as fit; tiles as tall as a 16:9 picture of their width needs,
        unless that would push cameras out of sight (then they shrink, down to a minimum)."""
        width, height = self.size
        scalar = self.styles.height
        if scalar is not None and scalar.is_auto:
            # Sized by its tiles (tall, narrow terminals): the budget is a share of
            # the screen, the rest goes to the other panes.
            height = max(TILE_MIN_HEIGHT, int(self.screen.size.height * AUTO_SHARE))
        if width <= 0 or height <= 0:
            return
        n = max(1, len(self._tiles))
        columns = max(1, min(n, (width + 1) // (TILE_MIN_WIDTH + 1)))
        tile_width = (width - (columns - 1)) // columns
        rows = -(-n // columns)
        ideal = TEXT_ROWS + max(3, round(tile_width * 9 / 32))
        tile_height = max(TILE_MIN_HEIGHT, min(ideal, height // rows))
        if (columns, tile_height) != self._grid:
            self._grid = (columns, tile_height)
            self._columns = columns
            self.styles.grid_size_columns = columns
            self.styles.grid_rows = str(tile_height)

    def action_move(self, dx: int, dy: int) -> None:
        n = len(self._tiles)
        if not n:
            return
        target = self.selected + dx + dy * self._columns
        if 0 <= target < n:
            self.selected = target
            tile = list(self._tiles.values())[target]
            self.scroll_to_widget(tile, animate=False)
            self._show_selection()

    def _show_selection(self) -> None:
        """Redraw tiles whose selection changed now, not at the next refresh: a key
        press must show at once."""
        for i, tile in enumerate(self._tiles.values()):
            if tile._last is not None:
                view, now, _ = tile._last
                tile.sync(view, now, i == self.selected and self.has_focus, tile._push)

    def on_focus(self) -> None:
        self._show_selection()

    def on_blur(self) -> None:
        self._show_selection()

    def action_open(self) -> None:
        cam_id = self.selected_id
        if cam_id is not None:
            self.post_message(OpenCamera(cam_id))

    def action_push(self) -> None:
        cam_id = self.selected_id
        if cam_id is not None:
            self.post_message(CommandPush(cam_id))

    def select(self, cam_id: str) -> None:
        ids = list(self._tiles)
        if cam_id in ids:
            self.selected = ids.index(cam_id)
            self.scroll_to_widget(self._tiles[cam_id], animate=False)
            self._show_selection()
