"""The times `edge export` takes (`--from`, `--to`), as wall-clock ns.

- ISO 8601 date and time: ``2026-12-01T14:03:22``, ``2026-12-01 14:03:22.250`` (local
  time), ``2026-12-01T13:03:22Z`` or with an offset (``+01:00``).
- ``session:NAME`` (a session's id or name): its start; ``session:NAME+OFFSET`` that much
  after its start; ``session:NAME@end`` its end (now, while it is open).
- ``+OFFSET`` (``--to`` only): that much after ``--from``.

An OFFSET is seconds (``90``, ``2.5``), ``1h2m3.5s`` or ``[H:]MM:SS[.mmm]``.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable

from edge.export import ExportError

_UNITS = re.compile(r"(?:(\d+(?:\.\d*)?)h)?(?:(\d+(?:\.\d*)?)m)?(?:(\d+(?:\.\d*)?)s)?")
_CLOCK = re.compile(r"(?:(\d+):)?(\d{1,2}):(\d{1,2}(?:\.\d*)?)")
_NS = 1_000_000_000

# A session's name or id -> its (start_ns, end_ns); raises ExportError when unknown.
SessionRange = Callable[[str], tuple[int, int]]


def parse_offset(text: str) -> int:
    """An OFFSET (see the module docstring) in ns."""
    t = text.strip()
    try:
        if t and t.replace(".", "", 1).isdigit():
            return round(float(t) * _NS)
        if m := _CLOCK.fullmatch(t):
            h, mi, s = m.groups()
            return round(((int(h or 0) * 60 + int(mi)) * 60 + float(s)) * _NS)
        m = _UNITS.fullmatch(t)
        if t and m:
            h, mi, s = (float(x) if x else 0.0 for x in m.groups())
            return round(((h * 60 + mi) * 60 + s) * _NS)
    except ValueError:
        pass
    raise ExportError(f"{text!r} is not a duration (90, 1m30s or 01:30)")


def parse_time(text: str, session_range: SessionRange, *, after: int | None = None) -> int:
    """`text` as wall-clock ns; `after` is what a ``+OFFSET`` counts from (None: refused)."""
    t = text.strip()
    if t.startswith("+"):
        if after is None:
            raise ExportError(f"{text!r}: a +OFFSET is only for --to (after --from)")
        return after + parse_offset(t[1:])
    if t.startswith("session:"):
        ref = t[len("session:"):]
        name, plus, offset = ref.rpartition("+")
        if not plus:
            name, offset = ref, ""
        at_end = name.endswith("@end")
        if at_end:
            name = name[:-len("@end")]
        if not name.strip():
            raise ExportError(f"{text!r}: name the session (session:NAME or session:ID)")
        start, end = session_range(name)
        return (end if at_end else start) + (parse_offset(offset) if offset else 0)
    try:
        when = dt.datetime.fromisoformat(t)
    except ValueError:
        raise ExportError(f"{text!r} is not a time: give ISO 8601 (2026-12-01T14:03:22, local; "
                          f"...Z for UTC), session:NAME[+OFFSET] or +OFFSET") from None
    if when.tzinfo is None:
        when = when.astimezone()  # a naive time is local, as an operator reads a clock
    delta = when - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return (delta.days * 86_400 + delta.seconds) * _NS + delta.microseconds * 1000


def clock(ns: int) -> str:
    """Local time of day as HH:MM:SS.mmm, as the exports print it."""
    t = dt.datetime.fromtimestamp(ns // _NS).astimezone()
    return f"{t:%H:%M:%S}.{ns // 1_000_000 % 1000:03d}"


def local_iso(ns: int) -> str:
    t = dt.datetime.fromtimestamp(ns // _NS).astimezone()
    return t.replace(microsecond=ns // 1000 % 1_000_000).isoformat(timespec="milliseconds")
