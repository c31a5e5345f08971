"""Named text styles (ok, stale, down, ...) that come from the .tcss files.

Widgets draw text with Rich styles; to keep colours in the stylesheets, each
widget declares the same component classes (``part--ok`` and so on) and
looks their Rich style up here, by meaning.
"""

from __future__ import annotations

from rich.console import Console
from rich.style import Style
from rich.text import Text
from textual.strip import Strip
from textual.widget import Widget

from edge.bus.mirror import Freshness, freshness
from ui.format import battery_level
from ui.severity import part_of

PART_NAMES = ("ok", "warn", "bad", "stale", "old", "down", "muted", "name", "accent", "mark",
              "info", "notice", "critical")
PART_CLASSES = {f"part--{name}" for name in PART_NAMES}


# The part rules are global (``.part--ok``), so a part looks the same in every widget
# of a class; the lookup is cached because Textual's own cache is dropped on every
# style update, and the tables and tiles ask for parts many times a refresh.
_cache: dict[tuple[type[Widget], str, bool], Style] = {}


def part(widget: Widget, name: str, blended: bool = False) -> Style:
    """The part's own style (to lay over other text), or `blended`: complete, with its
    translucent colours mixed over the widget's background (for a background)."""
    key = (type(widget), name, blended)
    style = _cache.get(key)
    if style is None:
        style = _cache[key] = widget.get_component_rich_style(
            f"part--{name}", partial=not blended, default=Style())
    return style


generation = 0  # bumped with each new theme, so widgets that cache drawings redraw


def clear_cache() -> None:
    """A new theme: every part looks different."""
    global generation
    _cache.clear()
    generation += 1


def aged(widget: Widget, text: str, age: float | None, style: Style | None = None,
         level: Freshness | None = None) -> Text:
    """`text` as fresh, dimmed (older than 3 s) or red (older than 10 s); `level`, if
    given, is the freshness already worked out."""
    base = style or Style()
    level = level or freshness(age)
    if level == "stale":
        base = base + part(widget, "stale")
    elif level in ("old", "none"):
        base = base + part(widget, "old" if level == "old" else "muted")
    return Text(text, style=base, no_wrap=True, overflow="ellipsis")


def word_style(widget: Widget, word: str) -> Style:
    """A state, outcome or severity in its colour (:data:`ui.severity.PART`)."""
    return part(widget, part_of(word))


def battery_style(widget: Widget, pct: object) -> Style:
    level = battery_level(pct)
    return part(widget, {"ok": "ok", "warn": "warn", "low": "bad"}.get(level, "muted"))


# Rendering one line of Text needs only a console's options, not the app's console.
CONSOLE = Console(width=1000, color_system="truecolor", force_terminal=True)


def fit_text(text: Text, width: int) -> Text:
    """`text` cut (with an ellipsis) or padded to exactly `width` cells, on one line."""
    out = text.copy()
    out.no_wrap = True
    out.truncate(width, overflow="ellipsis", pad=True)
    return out


def text_strip(text: Text, width: int, base: Style) -> Strip:
    """One line of text, exactly `width` cells, over the widget's own style."""
    segments = list(fit_text(text, width).render(CONSOLE, end=""))
    return Strip(segments).adjust_cell_length(width).apply_style(base)
