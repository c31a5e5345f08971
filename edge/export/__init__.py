"""Exports of what the recorder holds: a camera's clip as one MP4 (`clip`), a drone link's
raw MAVLink as one tlog (`tlog`), and a session's debrief as one self-contained HTML page
(`report`). Each reads the catalog and the files, never the live bus; `edge export` drives
them and shows their progress."""

from __future__ import annotations

from collections.abc import Callable

# What an export says of its progress: fraction done (0..1), and a few words.
Progress = Callable[[float, str], None]


class ExportError(Exception):
    """Bad input for an export (an unknown camera, an empty range...); one plain line."""


def no_progress(fraction: float, what: str) -> None:
    del fraction, what
