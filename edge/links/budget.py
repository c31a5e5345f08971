"""A metered link's data used, per local day and per incident, against its budgets.

Both directions count (a carrier bills what goes up and what comes down), from the
interface counters' running totals (:class:`edge.links.counters.Throughput`'s
``rx_total + tx_total``), which carry across counter resets. The totals start at 0
with each run of the service, so what a link carried while the service was stopped is
not counted; what was counted before a restart is kept in a small JSON file
(:func:`load` / :func:`save`), so a restart does not reset the day or the incident.

- **day**: the local calendar day (a plan's day is the operator's, not UTC's); the
  caller passes the date, so a test chooses it;
- **incident**: since the last ``new_incident`` command, or since the book was first
  made (no file yet).

Crossing 80% and then 100% of a budget gives one :class:`Crossing` each, once per
budget per day or incident, across restarts (the file keeps which were told). Should
the use fall back below a threshold (a budget raised in the config), that one can be
told again. A megabyte here is 10^6 bytes, as carriers count.

Pure apart from :func:`load` and :func:`save`; the caller does the file I/O where it
likes (off the event loop).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

MB = 1_000_000
THRESHOLDS_PCT = (80, 100)
FILE_NAME = "links-budget.json"
_VERSION = 1

Period = Literal["today", "incident"]


@dataclass(frozen=True, slots=True)
class Budget:
    """A link's budgets in MB (0: none of that kind)."""

    day_mb: int = 0
    incident_mb: int = 0

    @property
    def metered(self) -> bool:
        return self.day_mb > 0 or self.incident_mb > 0


@dataclass(frozen=True, slots=True)
class Crossing:
    link: str
    period: Period
    pct: int
    used_mb: float
    budget_mb: int

    def text(self) -> str:
        what = "today's" if self.period == "today" else "this incident's"
        return (f"link {self.link} has used {self.pct}% of {what} data budget "
                f"({self.used_mb:.1f} of {self.budget_mb} MB)")


@dataclass(frozen=True, slots=True)
class Usage:
    """What :class:`edge.bus.messages.LinkStatus` carries for a metered link."""

    used_today_mb: float
    budget_today_mb: float | None
    used_incident_mb: float
    budget_incident_mb: float | None


@dataclass(slots=True)
class _Account:
    today_bytes: int = 0
    incident_bytes: int = 0
    told_today: set[int] = field(default_factory=set)
    told_incident: set[int] = field(default_factory=set)


class BudgetBook:
    """The metered links' accounts. `budgets`: every link's budget (unmetered ones are
    ignored)."""

    def __init__(self, budgets: Mapping[str, Budget], *, day: dt.date, now_ns: int) -> None:
        self.budgets = {link: b for link, b in budgets.items() if b.metered}
        self.day = day
        self.incident_since_ns = now_ns
        self._accounts = {link: _Account() for link in self.budgets}
        self._last_total: dict[str, int] = {}
        self.dirty = False  # changed since the last to_json()

    @property
    def metered(self) -> bool:
        return bool(self.budgets)

    # -- counting ------------------------------------------------------------------------
    def count(self, link: str, total_bytes: int, day: dt.date) -> list[Crossing]:
        """The link's running total (both ways, bytes since this run started) is now
        `total_bytes`, on local `day`; the thresholds this crossed."""
        self.roll(day)
        account = self._accounts.get(link)
        if account is None:
            return []
        last = self._last_total.get(link, 0)
        # the meter only grows; a smaller total is a new meter (counting from zero again)
        added = total_bytes - last if total_bytes >= last else total_bytes
        self._last_total[link] = total_bytes
        if added > 0:
            account.today_bytes += added
            account.incident_bytes += added
            self.dirty = True
        return self._crossings(link, account)

    def roll(self, day: dt.date) -> None:
        """A new local day starts every day's account afresh."""
        if day == self.day:
            return
        self.day = day
        for account in self._accounts.values():
            account.today_bytes = 0
            account.told_today.clear()
        self.dirty = True

    def new_incident(self, now_ns: int) -> None:
        self.incident_since_ns = now_ns
        for account in self._accounts.values():
            account.incident_bytes = 0
            account.told_incident.clear()
        self.dirty = True

    def _crossings(self, link: str, account: _Account) -> list[Crossing]:
        budget = self.budgets[link]
        found: list[Crossing] = []
        periods: tuple[tuple[Period, int, int, set[int]], ...] = (
            ("today", account.today_bytes, budget.day_mb, account.told_today),
            ("incident", account.incident_bytes, budget.incident_mb, account.told_incident))
        for period, used, budget_mb, told in periods:
            if budget_mb <= 0:
                continue
            for pct in THRESHOLDS_PCT:
                reached = used * 100 >= pct * budget_mb * MB
                if reached and pct not in told:
                    told.add(pct)
                    self.dirty = True
                    found.append(Crossing(link, period, pct, used / MB, budget_mb))
                elif not reached and pct in told:
                    told.discard(pct)
                    self.dirty = True
        return found

    def usage(self, link: str) -> Usage | None:
        """The link's use against its budgets; None if it is not metered."""
        account = self._accounts.get(link)
        if account is None:
            return None
        budget = self.budgets[link]
        return Usage(used_today_mb=account.today_bytes / MB,
                     budget_today_mb=float(budget.day_mb) if budget.day_mb else None,
                     used_incident_mb=account.incident_bytes / MB,
                     budget_incident_mb=float(budget.incident_mb) if budget.incident_mb
                     else None)

    # -- the file's contents -------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        self.dirty = False
        return {"version": _VERSION, "day": self.day.isoformat(),
                "incident_since_ns": self.incident_since_ns,
                "links": {link: {"today_bytes": a.today_bytes,
                                 "incident_bytes": a.incident_bytes,
                                 "told_today": sorted(a.told_today),
                                 "told_incident": sorted(a.told_incident)}
                          for link, a in self._accounts.items()}}

    def restore(self, data: Any, *, day: dt.date) -> None:
        """Take what :meth:`to_json` saved (a day other than `day` is over: only the
        incident carries on). Raises ``ValueError`` saying what is wrong with it."""
        if not isinstance(data, dict) or data.get("version") != _VERSION:
            raise ValueError(f"not a version {_VERSION} budget file")
        try:
            saved_day = dt.date.fromisoformat(data["day"])
            since = data["incident_since_ns"]
            links = data["links"]
            if not isinstance(since, int) or not isinstance(links, dict):
                raise TypeError
            accounts = {link: _account(links[link]) for link in self._accounts
                        if link in links}
        except (KeyError, TypeError, ValueError):
            raise ValueError("its fields are missing or of the wrong type") from None
        self.incident_since_ns = since
        for link, account in accounts.items():
            if saved_day != day:
                account.today_bytes = 0
                account.told_today.clear()
            self._accounts[link] = account
        self.day = day
        self.dirty = saved_day != day


def _account(value: Any) -> _Account:
    counts = (value["today_bytes"], value["incident_bytes"])
    told = (value["told_today"], value["told_incident"])
    if not all(isinstance(c, int) and c >= 0 for c in counts) or not all(
            isinstance(t, list) and all(p in THRESHOLDS_PCT for p in t) for t in told):
        raise TypeError
    return _Account(counts[0], counts[1], set(told[0]), set(told[1]))


# -- the file ----------------------------------------------------------------------------
def load(path: Path, book: BudgetBook, *, day: dt.date) -> str | None:
    """Fill `book` from `path`; None, or one line saying why it starts from zero instead
    (a missing file is no problem: the first run)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        book.dirty = True  # the incident starts now: write it down
        return None
    except OSError as e:
        return f"cannot read the budget file {path}: {e.strerror or e}; counting from zero"
    try:
        book.restore(json.loads(data), day=day)
    except ValueError as e:  # json's (and UTF-8's) errors are ValueErrors too
        book.dirty = True
        return f"the budget file {path} is unusable ({e}); counting from zero"
    return None


def save(path: Path, data: dict[str, Any]) -> None:
    """Write `data` to `path` whole or not at all (a temporary file renamed over it).
    Raises ``OSError``."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "w") as f:
            json.dump(data, f, separators=(",", ":"))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
