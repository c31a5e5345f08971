"""Outage scripts: ``"down at 30s for 5s"``, ``"lte down at 30s for 60s; sat stall at 2m for 2s"``.

An event without a link name applies to every link. Times are seconds from the
emulator's start; a number may carry ``ms``, ``s`` or ``m``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from drivers.sim.link.profile import Outage, OutageKind

_EVENT = re.compile(
    r"^(?:(?P<wan>[a-z0-9][a-z0-9-]*)\s+)?(?P<kind>down|stall)\s+at\s+(?P<at>\S+)"
    r"\s+for\s+(?P<for>\S+)$")
_DURATION = re.compile(r"^(?P<n>\d+(?:\.\d+)?)\s*(?P<unit>ms|s|m)?$")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0}


@dataclass(frozen=True, slots=True)
class ScriptedOutage:
    wan: str | None  # None: every link
    outage: Outage


def _seconds(text: str, event: str) -> float:
    m = _DURATION.match(text)
    if not m:
        raise ValueError(f"{event!r}: expected a time like 30s, 500ms or 2m, got {text!r}")
    return float(m["n"]) * _UNIT[m["unit"] or "s"]


def parse_script(text: str, wans: Iterable[str] | None = None) -> list[ScriptedOutage]:
    """Parse a script; with `wans`, a link name not among them is an error."""
    known = None if wans is None else set(wans)
    events: list[ScriptedOutage] = []
    for raw in re.split(r"[;,]", text):
        event = " ".join(raw.split()).lower()
        if not event:
            continue
        m = _EVENT.match(event)
        if not m:
            raise ValueError(f"{event!r}: expected '[LINK] down|stall at TIME for DURATION', "
                             f"e.g. 'lte down at 30s for 60s'")
        wan = m["wan"]
        if known is not None and wan is not None and wan not in known:
            raise ValueError(f"{event!r}: no link named {wan!r} (links: "
                             f"{', '.join(sorted(known))})")
        duration = _seconds(m["for"], event)
        if duration <= 0:
            raise ValueError(f"{event!r}: the duration must be more than 0")
        kind: OutageKind = "down" if m["kind"] == "down" else "stall"
        events.append(ScriptedOutage(wan, Outage(_seconds(m["at"], event), duration, kind)))
    if not events:
        raise ValueError("empty script: expected e.g. 'down at 30s for 5s'")
    return events
