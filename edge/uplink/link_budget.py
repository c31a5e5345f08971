"""One bit-rate budget on the link to the centre, shared by every session that uses it.

A satellite modem has one queue (a quarter of a second at 4 Mbit/s) for all
that the vehicle sends. A budget per viewer let two viewers joining the main
stream at once each burst a catch-up GOP at the link's pace, twice what the
link takes: 160-200 drops at the modem and a 2 s freeze over LTE. So the
:class:`~edge.uplink.session.SessionManager` holds one budget for media and
one for repairs, at shares of the link's capacity, and every track and NACK
history draws from them.

A token bucket: tokens (bits) accrue at ``rate_bps`` up to ``burst_s`` of it.

- :meth:`LinkBudget.wait` is for media, which must go, later if need be: it
  takes the bits at once (the bucket may go negative) and says how long the
  caller should hold its unit, so concurrent callers queue in call order and
  together never leave faster than the rate.
- :meth:`LinkBudget.try_take` is for what may be skipped (a repair, a
  redundant copy): it takes the bits only if they are there, leaving
  ``reserve`` of the bucket untouched for more important takers.

A budget with no rate (the capacity is unknown) holds nothing back.
"""

from __future__ import annotations

import time


class LinkBudget:
    def __init__(self, rate_bps: float | None, burst_s: float) -> None:
        self.burst_s = burst_s
        self.rate_bps = rate_bps
        self._tokens = (rate_bps or 0.0) * burst_s
        self._at = time.monotonic()

    @property
    def rate_bps(self) -> float | None:
        return self._rate

    @rate_bps.setter
    def rate_bps(self, rate: float | None) -> None:
        # The links service may report a new capacity at any time; what has
        # accrued so far accrued at the old rate.
        if hasattr(self, "_rate"):
            self._refill()
        self._rate = rate if rate and rate > 0 else None

    def _refill(self) -> float:
        now = time.monotonic()
        if self._rate:
            self._tokens = min(self._rate * self.burst_s,
                               self._tokens + (now - self._at) * self._rate)
        self._at = now
        return now

    def wait(self, bits: int) -> float:
        """Take `bits` now; the seconds the caller must hold them back (0 if none)."""
        if not self._rate:
            return 0.0
        self._refill()
        self._tokens -= bits
        return -self._tokens / self._rate if self._tokens < 0 else 0.0

    def try_take(self, bits: int, reserve: float = 0.0) -> bool:
        """Take `bits` if the bucket holds them beyond `reserve` (a share of its depth)."""
        if not self._rate:
            return True
        self._refill()
        if self._tokens - bits < reserve * self._rate * self.burst_s:
            return False
        self._tokens -= bits
        return True


# Of the link's capacity: what media may leave at on average (the catch-up GOP
# is the burst this holds back), and what NACK repairs and redundant copies may
# take. Below 1 so that the modem's queue drains between bursts.
MEDIA_SHARE = 0.8
REPAIR_SHARE = 0.2
# How much media may leave at once: a live keyframe fits, a whole catch-up GOP
# does not. Repairs may use up to a second of their share at once.
MEDIA_BURST_S = 0.15
REPAIR_BURST_S = 1.0


class LinkBudgets:
    """The media and repair budgets of one link, at their shares of its capacity."""

    def __init__(self, capacity_bps: float | None = None) -> None:
        self.media = LinkBudget(None, MEDIA_BURST_S)
        self.repair = LinkBudget(None, REPAIR_BURST_S)
        self.capacity_bps = capacity_bps

    @property
    def capacity_bps(self) -> float | None:
        return self._capacity

    @capacity_bps.setter
    def capacity_bps(self, capacity: float | None) -> None:
        self._capacity = capacity
        self.media.rate_bps = capacity * MEDIA_SHARE if capacity else None
        self.repair.rate_bps = capacity * REPAIR_SHARE if capacity else None
