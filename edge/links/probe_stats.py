"""What one WAN's probes say: RTT, jitter and loss over a sliding window, and its state.

Pure and synchronous: every call takes ``now`` (seconds on any monotonic clock; the
prober uses ``time.monotonic``), so the figures and the state machine are tested
without sockets or sleeps.

Figures, over the probes sent in the last ``window_s`` (10 s):

- **RTT**: the median, not the mean: one reply held up by a modem's retransmission
  or a busy host would drag a mean of 100 samples for the whole window, and the
  median is what a steady stream crossing the link sees. ``rtt_p95_ms`` (nearest
  rank) says how bad the tail is.
- **jitter**: the mean absolute difference of consecutive RTTs (consecutive
  replies, in send order). That difference is RFC 3550's D(i-1, i) for a round
  trip; RFC 3550 smooths it with a 1/16 exponential filter that remembers a burst
  long after it is over, while a mean over the window forgets it with the window,
  as the RTT and loss do.
- **loss**: lost / decided. A probe is decided when its reply came, its send
  failed, or its deadline passed: ``max(min_deadline_s, 3 × srtt)`` (srtt the
  RFC 6298 smoothed RTT), so the six probes always in flight on a 600 ms link are
  not lost. A reply after the deadline still counts as received (it was late,
  not lost).

State (the bus's ``LinkStateName``):

- ``unknown`` until the first reply; ``down`` if none came within
  ``first_deadline_s`` of the first probe (a link that is dead at start must not
  stay ``unknown`` for ever);
- ``down`` once no reply has arrived for ``down_after_s`` (0.3 s). At 10 Hz a
  healthy link answers every 0.1 s whatever its RTT, so the gap does not depend on
  the RTT: one probe lost makes a 0.2 s gap and never takes a link down (two in a row
  make 0.3 s, on the edge: jitter decides; a noisy link wants 0.35 s);
- ``up`` again only after ``up_after`` (5) consecutive replies;
- ``degraded`` while replying but the loss is above ``degraded_loss_pct`` (judged
  on at least ``min_loss_samples`` decided probes) or the median RTT is above
  ``degraded_rtt_ms``; it is left only once both are below ``clear_ratio`` of their
  thresholds, so a link near a threshold does not flap. Both are judged on the
  probes sent since the link last came up: an outage was reported as ``down``
  already and must not keep the link ``degraded`` for a window after it is back.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from dataclasses import dataclass
from typing import Literal

from edge.bus.messages import LinkStateName

#: what became of a reply: taken, for a probe no longer waited for (too old, or
#: answered already), or not matching the probe of that number
ReplyResult = Literal["ok", "late", "mismatch"]
_SRTT_GAIN = 1 / 8  # RFC 6298's alpha


@dataclass(frozen=True, slots=True)
class ProbeSettings:
    window_s: float = 10.0
    down_after_s: float = 0.3
    up_after: int = 5
    degraded_loss_pct: float = 5.0
    #: None: RTT never makes the link degraded (give one per link: 600 ms is normal
    #: for a geostationary satellite and alarming for 4G)
    degraded_rtt_ms: float | None = None
    clear_ratio: float = 0.8
    min_loss_samples: int = 20
    min_deadline_s: float = 1.0
    deadline_rtts: float = 3.0
    first_deadline_s: float = 3.0

    def __post_init__(self) -> None:
        positive = {"window_s": self.window_s, "down_after_s": self.down_after_s,
                    "min_deadline_s": self.min_deadline_s,
                    "deadline_rtts": self.deadline_rtts,
                    "first_deadline_s": self.first_deadline_s}
        for name, value in positive.items():
            if not value > 0 or math.isinf(value):
                raise ValueError(f"probe setting {name} = {value}: expected a number of "
                                 "seconds above 0")
        if self.up_after < 1 or self.min_loss_samples < 1:
            raise ValueError("probe settings up_after and min_loss_samples must be at least 1")
        if not 0 <= self.degraded_loss_pct <= 100:
            raise ValueError(f"probe setting degraded_loss_pct = {self.degraded_loss_pct}: "
                             "expected 0..100")
        if self.degraded_rtt_ms is not None and not self.degraded_rtt_ms > 0:
            raise ValueError(f"probe setting degraded_rtt_ms = {self.degraded_rtt_ms}: "
                             "expected milliseconds above 0")
        if not 0 < self.clear_ratio <= 1:
            raise ValueError(f"probe setting clear_ratio = {self.clear_ratio}: "
                             "expected more than 0, at most 1")


@dataclass(frozen=True, slots=True)
class LinkSnapshot:
    """One WAN as its probes see it at one moment (times on the caller's clock)."""

    state: LinkStateName
    previous: LinkStateName  # the state before the last change
    since: float  # when the state last changed
    rtt_ms: float | None  # median over the window
    rtt_p95_ms: float | None
    jitter_ms: float | None
    loss_pct: float | None  # over the decided probes of the window
    sent: int  # probes, since the start
    received: int  # replies taken, since the start
    late: int  # replies to probes no longer waited for (out of the window, answered twice)
    sent_since_reply: int  # probes sent since the last reply arrived
    last_reply_age_s: float | None
    malformed: int = 0  # filled in by the prober: datagrams that were not our replies
    error: str | None = None  # filled in by the prober: the last socket error, one line


@dataclass(slots=True)
class _Sent:
    seq: int
    at: float
    stamp: int
    replied_at: float | None = None
    failed: bool = False


class ProbeStats:
    def __init__(self, settings: ProbeSettings | None = None, *, now: float) -> None:
        self.settings = settings or ProbeSettings()
        self._probes: deque[_Sent] = deque()
        self._by_seq: dict[int, _Sent] = {}
        self._state: LinkStateName = "unknown"
        self._previous: LinkStateName = "unknown"
        self._since = now
        self._sent = 0
        self._received = 0
        self._late = 0
        self._sent_since_reply = 0
        self._first_sent_at: float | None = None
        self._last_reply_at: float | None = None
        # Silence is measured from here when our own process was held up after the last
        # reply (a busy machine): replies that waited for us are not the link's silence.
        self._excused_at: float | None = None
        self._srtt: float | None = None
        self._last_replied_seq: int | None = None
        self._streak = 0  # consecutive sequence numbers answered
        self._streak_from = now  # when the first probe of the streak was sent
        self._judged_from = now  # degraded is judged on probes sent from here

    @property
    def state(self) -> LinkStateName:
        return self._state

    # -- events --------------------------------------------------------------------------
    def sent(self, seq: int, now: float, *, stamp: int = 0, failed: bool = False) -> None:
        """Probe `seq` left at `now` (or its send `failed`: sent and lost at once).

        `stamp` is anything the caller wants a reply to match (the prober's send time).
        """
        self._prune(now)
        probe = _Sent(seq, now, stamp, failed=failed)
        old = self._by_seq.pop(seq, None)
        if old is not None:  # a wrapped sequence number: the old one is long gone
            self._probes.remove(old)
        self._probes.append(probe)
        self._by_seq[seq] = probe
        self._sent += 1
        self._sent_since_reply += 1
        if self._first_sent_at is None:
            self._first_sent_at = now

    def reply(self, seq: int, now: float, *, stamp: int = 0) -> ReplyResult:
        """The reply to probe `seq` arrived at `now`. Call :meth:`update` after."""
        self._prune(now)
        probe = self._by_seq.get(seq)
        if probe is None or probe.replied_at is not None:
            self._late += 1
            return "late"
        if probe.stamp != stamp or probe.failed:
            return "mismatch"
        probe.replied_at = now
        rtt = now - probe.at
        self._srtt = rtt if self._srtt is None else self._srtt + _SRTT_GAIN * (rtt - self._srtt)
        self._received += 1
        self._sent_since_reply = 0
        self._last_reply_at = now
        if self._streak and self._last_replied_seq is not None \
                and seq == (self._last_replied_seq + 1) & 0xFFFF_FFFF:
            self._streak += 1
        else:
            self._streak, self._streak_from = 1, probe.at
        self._last_replied_seq = seq
        return "ok"

    # -- the state machine ---------------------------------------------------------------
    def excuse(self, now: float) -> None:
        """Our process was held up until `now`: the link gets `down_after_s` from here
        to answer before it is judged silent."""
        self._excused_at = now

    def _silent_since(self) -> float | None:
        if self._last_reply_at is None or self._excused_at is None:
            return self._last_reply_at
        return max(self._last_reply_at, self._excused_at)

    def update(self, now: float) -> bool:
        """Decide the state at `now`; True if it changed."""
        self._prune(now)
        s = self.settings
        state = self._state
        new: LinkStateName = state
        gap = None if self._last_reply_at is None else now - self._last_reply_at
        if state in ("up", "degraded"):
            silent = self._silent_since()
            if silent is not None and now - silent >= s.down_after_s:
                new = "down"
            else:
                new = "degraded" if self._bad(now, leaving=state == "degraded") else "up"
        elif state == "unknown":
            if gap is not None:
                new = self._come_up(now)
            elif (self._first_sent_at is not None
                  and now - self._first_sent_at >= s.first_deadline_s):
                new = "down"
        elif state == "down":
            if self._streak >= s.up_after and gap is not None and gap < s.down_after_s:
                new = self._come_up(now)
        if new == state:
            return False
        self._previous, self._state, self._since = state, new, now
        if new == "down":
            self._streak = 0
        return True

    def next_check(self) -> float:
        """When :meth:`update` must run next even if nothing is sent or received (the
        moment the link would be declared down), or ``inf``."""
        s = self.settings
        silent = self._silent_since()
        if self._state in ("up", "degraded") and silent is not None:
            return silent + s.down_after_s
        if self._state == "unknown" and self._first_sent_at is not None \
                and self._last_reply_at is None:
            return self._first_sent_at + s.first_deadline_s
        return math.inf

    def _come_up(self, now: float) -> LinkStateName:
        self._judged_from = self._streak_from
        return "degraded" if self._bad(now, leaving=False) else "up"

    def _bad(self, now: float, *, leaving: bool) -> bool:
        """Degraded by the probes sent since the link came up; to leave, both figures must
        be below `clear_ratio` of their thresholds."""
        s = self.settings
        ratio = s.clear_ratio if leaving else 1.0
        judged = [p for p in self._probes if p.at >= self._judged_from]
        decided, lost = self._loss(judged, now)
        if decided >= s.min_loss_samples and 100 * lost / decided > s.degraded_loss_pct * ratio:
            return True
        if s.degraded_rtt_ms is not None:
            rtts = self._rtts(judged)
            if rtts and statistics.median(rtts) * 1000 > s.degraded_rtt_ms * ratio:
                return True
        return False

    # -- figures -------------------------------------------------------------------------
    def snapshot(self, now: float) -> LinkSnapshot:
        """The figures at `now`; the state as the last :meth:`update` left it."""
        self._prune(now)
        rtts = self._rtts(self._probes)
        decided, lost = self._loss(self._probes, now)
        rtt_ms = p95_ms = jitter_ms = None
        if rtts:
            ordered = sorted(rtts)
            rtt_ms = statistics.median(ordered) * 1000
            p95_ms = ordered[math.ceil(0.95 * len(ordered)) - 1] * 1000
        if len(rtts) >= 2:
            steps = zip(rtts, rtts[1:], strict=False)
            jitter_ms = statistics.fmean(abs(b - a) for a, b in steps) * 1000
        return LinkSnapshot(
            state=self._state, previous=self._previous, since=self._since,
            rtt_ms=rtt_ms, rtt_p95_ms=p95_ms, jitter_ms=jitter_ms,
            loss_pct=100 * lost / decided if decided else None,
            sent=self._sent, received=self._received, late=self._late,
            sent_since_reply=self._sent_since_reply,
            last_reply_age_s=None if self._last_reply_at is None else now - self._last_reply_at)

    def deadline_s(self) -> float:
        """How long a probe is waited for before it counts as lost."""
        s = self.settings
        if self._srtt is None:
            return s.first_deadline_s
        return max(s.min_deadline_s, s.deadline_rtts * self._srtt)

    @staticmethod
    def _rtts(probes: deque[_Sent] | list[_Sent]) -> list[float]:
        return [p.replied_at - p.at for p in probes if p.replied_at is not None]

    def _loss(self, probes: deque[_Sent] | list[_Sent], now: float) -> tuple[int, int]:
        """(decided, lost) among `probes`."""
        deadline = self.deadline_s()
        decided = lost = 0
        for p in probes:
            if p.replied_at is not None:
                decided += 1
            elif p.failed or now - p.at >= deadline:
                decided += 1
                lost += 1
        return decided, lost

    def _prune(self, now: float) -> None:
        horizon = now - self.settings.window_s
        while self._probes and self._probes[0].at < horizon:
            del self._by_seq[self._probes.popleft().seq]
