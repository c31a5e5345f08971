"""Turning bus values into short, safe text.

Everything here accepts whatever a message may carry (None, NaN, negative
numbers, strings of any length with control characters) and returns
something printable in a fixed small width, because a dashboard that crashes
or garbles the terminal on one odd value is worse than no dashboard.
"""

from __future__ import annotations

import math
import time
import unicodedata
from typing import Any

NONE = "—"
MAX_TEXT = 400  # longest string kept from any message field

# Battery colour thresholds, in percent: red below LOW, yellow below WARN.
BATTERY_LOW_PCT = 20.0
BATTERY_WARN_PCT = 40.0


def clean(value: Any, limit: int = MAX_TEXT) -> str:
    """Printable text: control and format characters (escape sequences, newlines,
    bidi overrides) would move the cursor or reorder the screen, so they become spaces."""
    if value is None:
        return ""
    text = value if isinstance(value, str) else str(value)
    text = text[:limit]
    if text.isprintable():
        return text
    return "".join(
        ch if ch.isprintable() and unicodedata.category(ch) not in ("Cf", "Co", "Cs") else " "
        for ch in text
    )


def finite(value: Any) -> float | None:
    """A real, finite number, or None for anything else (bools are not numbers here)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    v = float(value)
    return v if math.isfinite(v) else None


def number(value: Any, fmt: str = ".0f", unit: str = "", lo: float | None = None,
           hi: float | None = None) -> str:
    """`value` formatted, or an em dash; outside [lo, hi] it is shown but marked with '!'."""
    v = finite(value)
    if v is None:
        return NONE
    mark = "!" if (lo is not None and v < lo) or (hi is not None and v > hi) else ""
    text = f"{v:{fmt}}"
    if text.startswith("-") and not text.strip("-0.e+"):
        text = text[1:]  # -0.0: a sign that says nothing
    if len(text) > 8:  # absurd magnitudes must not widen a column
        text = f"{v:.1e}"
    return f"{text}{unit}{mark}"


def age_text(age: float | None) -> str:
    if age is None:
        return NONE
    if age < 1.0:
        return "0s"
    if age < 100:
        return f"{int(age)}s"
    if age < 6000:
        return f"{int(age // 60)}m"
    if age < 360000:
        return f"{int(age // 3600)}h"
    if age < 100 * 86400:
        return f"{int(age // 86400)}d"
    return ">99d"


def rate_text(kbps: Any) -> str:
    """A bit rate in kbit/s as '812k' or '4.1M'."""
    v = finite(kbps)
    if v is None:
        return NONE
    if v < 0:
        return "<0!"
    if v < 1000:
        return f"{v:.0f}k"
    if v < 100_000:
        return f"{v / 1000:.1f}M"
    if v < 10_000_000:
        return f"{v / 1000:.0f}M"
    return f"{v:.1e}k"


def distance_text(metres: float | None) -> str:
    if metres is None or not math.isfinite(metres):
        return NONE
    if metres < 0:
        return "<0!"
    if metres < 1000:
        return f"{metres:.0f}m"
    if metres < 100_000:
        return f"{metres / 1000:.1f}km"
    if metres < 100_000_000:
        return f"{metres / 1000:.0f}km"
    return "far"


def battery_level(pct: Any) -> str:
    """'ok', 'warn', 'low' or 'none'."""
    v = finite(pct)
    if v is None:
        return "none"
    if v < BATTERY_LOW_PCT:
        return "low"
    if v < BATTERY_WARN_PCT:
        return "warn"
    return "ok"


def bytes_text(n: Any) -> str:
    """1.2 GB, 350 MB, 12 kB (decimal units, as disks are sold); "?" if not a size."""
    value = finite(n)
    if value is None or value < 0:
        return "?"
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if value >= size:
            return f"{value / size:.1f} {unit}" if value < 10 * size else \
                f"{value / size:.0f} {unit}"
    return f"{value:.0f} B"


def clock_text(ts: float | None, seconds: bool = True) -> str:
    """Local wall-clock time of `ts` (seconds since the epoch)."""
    if ts is None:
        return NONE
    try:
        t = time.localtime(ts)
    except (OverflowError, OSError, ValueError):
        return NONE
    return time.strftime("%H:%M:%S" if seconds else "%H:%M", t)


def ns_to_s(ns: Any) -> float | None:
    v = finite(ns)
    return None if v is None or v <= 0 else v / 1e9
