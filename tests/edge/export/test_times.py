"""The times `edge export` takes, parsed without a recording."""

from __future__ import annotations

import datetime as dt

import pytest

from edge.export import ExportError
from edge.export.times import parse_offset, parse_time

START, END = 1_796_150_880_000_000_000, 1_796_150_940_000_000_000  # a session of 60 s


def drill(name: str) -> tuple[int, int]:
    if name != "Drill":
        raise ExportError(f"no session named {name!r}")
    return START, END


@pytest.mark.parametrize("text, ns", [
    ("90", 90_000_000_000), ("2.5", 2_500_000_000), ("1m30s", 90_000_000_000),
    ("1h", 3_600_000_000_000), ("01:30", 90_000_000_000), ("1:00:01.5", 3_601_500_000_000),
])
def test_offsets(text: str, ns: int) -> None:
    assert parse_offset(text) == ns


def test_times() -> None:
    assert parse_time("2026-12-01T18:48:00Z", drill) == START
    assert parse_time("2026-12-01T19:48:00.250+01:00", drill) == START + 250_000_000
    local = dt.datetime(2026, 12, 1, 18, 48).astimezone()
    assert parse_time("2026-12-01 18:48:00", drill) == int(local.timestamp()) * 10**9
    assert parse_time("session:Drill", drill) == START
    assert parse_time("session:Drill+1m", drill) == START + 60_000_000_000
    assert parse_time("session:Drill@end", drill) == END
    assert parse_time("+5", drill, after=START) == START + 5_000_000_000


@pytest.mark.parametrize("text, says", [
    ("yesterday", "is not a time"), ("+5", "only for --to"), ("session:", "name the session"),
    ("session:Nope", "no session named 'Nope'"), ("session:Drill+soon", "is not a duration"),
])
def test_bad_times(text: str, says: str) -> None:
    with pytest.raises(ExportError, match=says):
        parse_time(text, drill)
