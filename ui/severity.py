"""How serious each word from the bus is, and the part (colour) it is drawn in: one map.

Device states, command outcomes and alert severities are words (``Literal``
types in :mod:`edge.bus.messages`, plus the dashboard's own: ``silent``,
``unknown``, ``sent``, ``mark``). Every widget colours a word through
:data:`PART`; the event log, notifications and pop-ups rank through
:data:`SEVERITY_RANK`. The parts' colours themselves are in ``styles/*.tcss``.
"""

from __future__ import annotations

from typing import Literal

from textual.notifications import SeverityLevel

from edge.bus.messages import SEVERITIES, ReplyStatus, Severity

# An event's severity: an alert's, or a mark the commander made.
EventSeverity = Severity | Literal["mark"]
EVENT_SEVERITIES: tuple[EventSeverity, ...] = (*SEVERITIES, "mark")
SEVERITY_RANK: dict[str, int] = {name: i for i, name in enumerate(SEVERITIES)}

PART: dict[str, str] = {
    # a device's state: cameras, drones, links
    "live": "ok", "up": "ok",
    "connecting": "warn", "degraded": "warn",
    "standby": "muted",  # a camera let go while nobody watches: as it should be
    "down": "down", "lost": "down", "silent": "down",
    "unknown": "muted",
    # a feed pushed to the centre (live and connecting as above)
    "retrying": "warn", "failed": "bad", "idle": "muted",
    # a command's outcome (and "sent": still waiting for it)
    "accepted": "ok", "sent": "warn", "rejected": "bad", "busy": "bad", "timeout": "bad",
    # an alert's severity, and the commander's marks
    "debug": "muted", "info": "info", "notice": "notice", "warning": "warn", "error": "bad",
    "critical": "critical", "alert": "critical", "emergency": "critical", "mark": "mark",
}

# A severity in four letters, for a column or a title.
SEVERITY_SHORT: dict[str, str] = {
    "debug": "DBG", "info": "INFO", "notice": "NOTE", "warning": "WARN", "error": "ERR",
    "critical": "CRIT", "alert": "ALRT", "emergency": "EMRG", "mark": "MARK"}

# How serious a command's outcome is, for the event log and the notification.
REPLY_SEVERITY: dict[ReplyStatus, Severity] = {
    "accepted": "notice", "rejected": "warning", "busy": "warning", "timeout": "error",
    "error": "error"}


def part_of(word: str) -> str:
    return PART.get(word, "muted")


def at_least(severity: str, floor: Severity) -> bool:
    """True if `severity` is `floor` or worse (a mark is no alert: never)."""
    return SEVERITY_RANK.get(severity, -1) >= SEVERITY_RANK[floor]


def notify_level(severity: str) -> SeverityLevel:
    """Textual's notification level for a severity."""
    if at_least(severity, "error"):
        return "error"
    return "warning" if at_least(severity, "warning") else "information"
