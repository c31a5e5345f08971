"""Metered links' data against their budgets: counting, days, incidents, the 80% and
100% crossings told once each, and the file that carries it all across a restart."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from edge.links.budget import MB, Budget, BudgetBook, Crossing, Usage, load, save

DAY = dt.date(2026, 3, 14)
NEXT_DAY = dt.date(2026, 3, 15)


def book(**budgets: Budget) -> BudgetBook:
    return BudgetBook(budgets, day=DAY, now_ns=1_000)


def test_both_directions_are_counted_from_the_running_totals() -> None:
    b = book(sat=Budget(day_mb=100, incident_mb=500), lte=Budget())
    assert not b.count("sat", 0, DAY)
    assert not b.count("sat", 3 * MB, DAY)
    assert not b.count("sat", 5 * MB, DAY)  # totals only grow: 2 MB more
    assert b.usage("sat") == Usage(5.0, 100.0, 5.0, 500.0)
    # an unmetered link is not counted at all
    assert b.count("lte", 50 * MB, DAY) == []
    assert b.usage("lte") is None and b.usage("nope") is None
    assert Budget(incident_mb=1).metered and not Budget().metered


def test_80_and_100_percent_are_told_once_each_per_day() -> None:
    b = book(sat=Budget(day_mb=10))
    assert b.count("sat", 7 * MB, DAY) == []
    (c80,) = b.count("sat", 8 * MB, DAY)
    assert c80 == Crossing("sat", "today", 80, 8.0, 10)
    assert c80.text() == "link sat has used 80% of today's data budget (8.0 of 10 MB)"
    assert b.count("sat", 9 * MB, DAY) == []
    (c100,) = b.count("sat", 10 * MB, DAY)
    assert (c100.pct, c100.period) == (100, "today")
    assert b.count("sat", 20 * MB, DAY) == []
    # a new day starts from zero, and tells again
    assert b.count("sat", 21 * MB, NEXT_DAY) == []
    assert b.usage("sat") == Usage(1.0, 10.0, 21.0, None)
    assert [c.pct for c in b.count("sat", 33 * MB, NEXT_DAY)] == [80, 100]  # 12 MB: both


def test_a_new_incident_counts_from_zero_but_the_day_goes_on() -> None:
    b = book(sat=Budget(day_mb=100, incident_mb=10))
    assert [c.period for c in b.count("sat", 9 * MB, DAY)] == ["incident"]
    b.new_incident(2_000)
    assert b.incident_since_ns == 2_000
    assert b.usage("sat") == Usage(9.0, 100.0, 0.0, 10.0)
    assert [(c.period, c.pct) for c in b.count("sat", 17 * MB, DAY)] == [("incident", 80)]
    assert b.usage("sat") == Usage(17.0, 100.0, 8.0, 10.0)


def test_a_budget_raised_below_what_was_used_can_be_told_again(tmp_path: Path) -> None:
    path = tmp_path / "budget.json"
    b = book(sat=Budget(day_mb=10))
    b.count("sat", 9 * MB, DAY)
    save(path, b.to_json())
    raised = book(sat=Budget(day_mb=100))
    assert load(path, raised, day=DAY) is None
    assert raised.count("sat", 0, DAY) == []  # 9 of 100: below 80% again
    assert [c.pct for c in raised.count("sat", 71 * MB, DAY)] == [80]


def test_the_file_carries_day_incident_and_what_was_told_across_a_restart(
        tmp_path: Path) -> None:
    path = tmp_path / "links-budget.json"
    first = book(sat=Budget(day_mb=10, incident_mb=50))
    assert load(path, first, day=DAY) is None  # no file yet: the first run
    assert first.dirty
    first.count("sat", 8 * MB, DAY)  # 80% of the day told
    save(path, first.to_json())
    assert not first.dirty
    assert json.loads(path.read_text())["links"]["sat"]["today_bytes"] == 8 * MB

    # a restart: the meter starts again from zero, what was counted stays
    again = book(sat=Budget(day_mb=10, incident_mb=50))
    assert load(path, again, day=DAY) is None
    assert again.usage("sat") == Usage(8.0, 10.0, 8.0, 50.0)
    assert again.incident_since_ns == first.incident_since_ns
    assert again.count("sat", 1 * MB, DAY) == []  # 9 MB: 80% was told before the restart
    assert [c.pct for c in again.count("sat", 2 * MB, DAY)] == [100]

    # restarted on another day: the day is over, the incident goes on
    later = book(sat=Budget(day_mb=10, incident_mb=50))
    assert load(path, later, day=NEXT_DAY) is None
    assert later.usage("sat") == Usage(0.0, 10.0, 8.0, 50.0)
    assert later.dirty  # the new day is to be written down


@pytest.mark.parametrize("content", [b"{not json", b"\xff\xfe", b"[]",
                                     b'{"version": 1, "day": "2026-13-01"}',
                                     b'{"version": 1, "day": "2026-03-14", '
                                     b'"incident_since_ns": 1, "links": '
                                     b'{"sat": {"today_bytes": -5}}}'])
def test_an_unusable_file_is_one_line_and_counting_starts_afresh(
        tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "links-budget.json"
    path.write_bytes(content)
    b = book(sat=Budget(day_mb=10))
    problem = load(path, b, day=DAY)
    assert problem is not None and "\n" not in problem
    assert problem.startswith(f"the budget file {path} is unusable (")
    assert problem.endswith("); counting from zero")
    assert b.usage("sat") == Usage(0.0, 10.0, 0.0, None)
    assert b.dirty  # the next save replaces it


def test_an_unreadable_file_is_one_line(tmp_path: Path) -> None:
    b = book(sat=Budget(day_mb=10))
    problem = load(tmp_path, b, day=DAY)  # a directory: cannot be read as a file
    assert problem == (f"cannot read the budget file {tmp_path}: Is a directory; "
                       "counting from zero")


def test_save_leaves_the_old_file_whole_when_it_cannot_write(tmp_path: Path) -> None:
    path = tmp_path / "links-budget.json"
    save(path, {"version": 1})
    with pytest.raises(OSError):
        save(tmp_path / "missing-dir" / "links-budget.json", {"version": 1})
    assert json.loads(path.read_text()) == {"version": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["links-budget.json"]
