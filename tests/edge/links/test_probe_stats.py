"""ProbeStats on a simulated clock: figures, when a probe counts as lost, and the states.

A probe run is simulated in whole milliseconds (`Sim`): probes leave at `rate` Hz,
each reply arrives one RTT later unless the test drops it, and the state is updated
at every event and every millisecond in between, as often as a prober could.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest

from edge.bus.messages import LINK_STATES
from edge.links.probe_stats import LinkSnapshot, ProbeSettings, ProbeStats

Lost = Callable[[int, float], bool]  # (seq, send time) → dropped?


def never(seq: int, at: float) -> bool:
    return False


class Sim:
    def __init__(self, settings: ProbeSettings | None = None, rate: float = 10.0,
                 rtt_s: float = 0.05) -> None:
        self.stats = ProbeStats(settings, now=0.0)
        self.period_ms = round(1000 / rate)
        self.rtt_s = rtt_s
        self.ms = 0
        self.seq = 0
        self.in_flight: list[tuple[int, int]] = []  # (arrival ms, seq)
        self.changes: list[tuple[float, LinkSnapshot]] = []
        self.replies_since_down = 0

    @property
    def now(self) -> float:
        return self.ms / 1000

    def run(self, seconds: float, lost: Lost = never,
            rtt: Callable[[int], float] | None = None) -> None:
        end = self.ms + round(seconds * 1000)
        while self.ms < end:
            self.ms += 1
            if self.ms % self.period_ms == 0:
                self.stats.sent(self.seq, self.now, stamp=self.seq * 7)
                if not lost(self.seq, self.now):
                    delay = rtt(self.seq) if rtt else self.rtt_s
                    self.in_flight.append((self.ms + round(delay * 1000), self.seq))
                self.seq += 1
            for arrival, seq in [f for f in self.in_flight if f[0] <= self.ms]:
                self.in_flight.remove((arrival, seq))
                assert self.stats.reply(seq, self.now, stamp=seq * 7) == "ok"
                if self.stats.state == "down":
                    self.replies_since_down += 1
                self.update()
            self.update()

    def update(self) -> None:
        if self.stats.update(self.now):
            snap = self.stats.snapshot(self.now)
            self.changes.append((self.now, snap))
            if snap.state == "down":
                self.replies_since_down = 0

    def states(self) -> list[str]:
        return [snap.state for _, snap in self.changes]

    def snap(self) -> LinkSnapshot:
        return self.stats.snapshot(self.now)


# -- figures ---------------------------------------------------------------------------


def test_before_any_reply_it_is_unknown_with_no_figures() -> None:
    sim = Sim(rtt_s=0.6)
    sim.run(0.5)
    snap = sim.snap()
    assert snap.state == "unknown" and snap.sent == 5 and snap.received == 0
    assert snap.rtt_ms is None and snap.jitter_ms is None and snap.loss_pct is None
    assert snap.last_reply_age_s is None


def test_rtt_is_the_median_and_p95_the_tail() -> None:
    sim = Sim()
    # every 20th reply is held up 400 ms: a mean would move, the median must not
    sim.run(10, rtt=lambda seq: 0.45 if seq % 20 == 19 else 0.05)
    snap = sim.snap()
    assert snap.rtt_ms == pytest.approx(50)
    assert snap.rtt_p95_ms == pytest.approx(50)  # 5 of ~100 are slow: exactly the 95th's edge
    sim.run(10, rtt=lambda seq: 0.45 if seq % 10 == 9 else 0.05)
    assert sim.snap().rtt_ms == pytest.approx(50)
    assert sim.snap().rtt_p95_ms == pytest.approx(450)


def test_jitter_is_the_mean_step_between_consecutive_rtts() -> None:
    sim = Sim()
    sim.run(5, rtt=lambda seq: 0.04 if seq % 2 else 0.06)
    assert sim.snap().jitter_ms == pytest.approx(20)
    sim.run(15)  # steady now, and the window (10 s) has forgotten the jitter
    assert sim.snap().jitter_ms == pytest.approx(0, abs=1e-6)


def test_loss_is_lost_over_decided_in_the_window() -> None:
    sim = Sim()
    sim.run(12, lost=lambda seq, at: seq % 10 == 3)
    assert sim.snap().loss_pct == pytest.approx(10, abs=1.2)  # ~100 decided, 10 lost
    sim.run(12)  # the lossy probes leave the window
    assert sim.snap().loss_pct == 0


def test_a_probe_in_flight_on_a_satellite_link_is_not_lost() -> None:
    sim = Sim(rtt_s=0.6)
    seen: list[float | None] = []
    for _ in range(40):  # 4 s: six probes always in flight
        sim.run(0.1)
        seen.append(sim.snap().loss_pct)
    assert all(loss in (None, 0.0) for loss in seen), seen
    assert sim.snap().received > 0


def test_a_lost_probe_counts_only_once_its_deadline_has_passed() -> None:
    sim = Sim(rtt_s=0.6)
    sim.run(3)
    dropped_at = sim.now + 0.1  # the next probe is dropped
    sim.run(1.5, lost=lambda seq, at: at == pytest.approx(dropped_at))
    # deadline: max(1 s, 3 x srtt) = 1.8 s after it left, not yet
    assert sim.now - dropped_at < 1.8
    assert sim.snap().loss_pct == 0
    sim.run(0.5)
    assert (sim.snap().loss_pct or 0) > 0
    assert sim.stats.deadline_s() == pytest.approx(1.8, abs=0.01)


def test_a_reply_after_its_deadline_is_late_not_lost() -> None:
    sim = Sim(rtt_s=0.05)
    sim.run(2)
    sim.run(2, rtt=lambda seq: 1.5 if seq == 25 else 0.05)
    # probe 25 left at 2.6 s; its deadline (1 s) has passed and its reply is still out
    assert (sim.snap().loss_pct or 0) > 0
    sim.run(0.2)
    assert sim.snap().loss_pct == 0  # it arrived at last: received, so not lost
    assert sim.snap().rtt_p95_ms is not None
    # a reply to a probe out of the window, and a second reply, are late
    stats = sim.stats
    assert stats.reply(0, sim.now + 20) == "late"
    assert stats.reply(sim.seq - 1, sim.now, stamp=(sim.seq - 1) * 7) in ("ok", "late")
    assert stats.reply(sim.seq - 1, sim.now, stamp=(sim.seq - 1) * 7) == "late"
    assert stats.snapshot(sim.now).late >= 2


def test_a_reply_that_does_not_match_its_probe_is_refused() -> None:
    stats = ProbeStats(now=0.0)
    stats.sent(1, 0.0, stamp=1234)
    assert stats.reply(1, 0.05, stamp=999) == "mismatch"
    assert stats.snapshot(0.05).received == 0
    assert stats.reply(1, 0.06, stamp=1234) == "ok"


def test_a_failed_send_is_sent_and_lost_at_once() -> None:
    stats = ProbeStats(now=0.0)
    stats.sent(0, 0.0, failed=True)
    snap = stats.snapshot(0.001)
    assert snap.sent == 1 and snap.loss_pct == 100


# -- states ----------------------------------------------------------------------------


def test_states_are_the_bus_words() -> None:
    sim = Sim()
    sim.run(2)
    sim.run(2, lost=lambda seq, at: True)
    sim.run(2)
    assert set(sim.states()) <= set(LINK_STATES)
    assert sim.states() == ["up", "down", "up"]


def test_the_first_reply_brings_it_up() -> None:
    sim = Sim(rtt_s=0.6)
    sim.run(0.7)  # the first probe left at 0.1 s and is back at 0.7 s
    assert sim.states() == ["up"]
    assert sim.changes[0][0] == pytest.approx(0.7)
    assert sim.changes[0][1].previous == "unknown"


def test_a_link_that_never_answers_goes_down_after_the_first_deadline() -> None:
    sim = Sim()
    sim.run(3, lost=lambda seq, at: True)
    assert sim.snap().state == "unknown"
    sim.run(0.2, lost=lambda seq, at: True)
    assert sim.states() == ["down"]


@pytest.mark.parametrize("rtt_s", [0.05, 0.6])
def test_one_probe_in_ten_lost_never_takes_the_link_down(rtt_s: float) -> None:
    sim = Sim(rtt_s=rtt_s)
    sim.run(60, lost=lambda seq, at: seq % 10 == 4)
    assert "down" not in sim.states()
    # 10% loss is above the 5% threshold: degraded, once, and it stays so
    assert sim.states() == ["up", "degraded"]


@pytest.mark.parametrize("rtt_s", [0.05, 0.6])
def test_a_cut_goes_down_after_the_gap_and_comes_back_after_five_replies(rtt_s: float) -> None:
    sim = Sim(rtt_s=rtt_s)
    sim.run(3)
    cut_at = sim.now
    sim.run(1, lost=lambda seq, at: True)
    assert sim.states() == ["up", "down"]
    down_at, down = sim.changes[-1]
    # the last reply is the one already in flight at the cut
    assert down_at - cut_at <= rtt_s + 0.3 + 0.001
    assert down.last_reply_age_s == pytest.approx(0.3, abs=0.0011)  # checked every ms
    assert down.sent_since_reply <= 3
    # four replies are not enough, the fifth consecutive one is
    sim.run(rtt_s + 0.1 * 4)
    assert sim.replies_since_down == 4 and sim.snap().state == "down"
    sim.run(0.1)
    assert sim.replies_since_down == 5
    assert sim.states() == ["up", "down", "up"]  # not degraded by the outage's losses


def test_replies_with_a_gap_between_them_do_not_bring_it_up() -> None:
    sim = Sim()
    sim.run(2)
    sim.run(1, lost=lambda seq, at: True)
    assert sim.snap().state == "down"
    # back, but every fourth probe is lost: never five in a row
    sim.run(5, lost=lambda seq, at: seq % 4 == 0)
    assert sim.snap().state == "down"
    sim.run(0.6)
    assert sim.snap().state == "up"


def test_degraded_by_loss_and_back_up_below_the_clear_ratio() -> None:
    sim = Sim(ProbeSettings(clear_ratio=0.5))
    sim.run(12)
    assert sim.snap().state == "up"
    sim.run(12, lost=lambda seq, at: seq % 10 == 0)
    assert sim.snap().state == "degraded"
    # 1 in 30: below the 5% threshold, above 0.5 x 5%: it stays degraded all along
    changes = len(sim.changes)
    sim.run(25, lost=lambda seq, at: seq % 30 == 0)
    assert 2.5 < (sim.snap().loss_pct or 0) < 5
    assert len(sim.changes) == changes
    sim.run(12)
    assert sim.snap().state == "up"
    assert sim.states() == ["up", "degraded", "up"]


def test_degraded_by_rtt_with_a_threshold_per_link() -> None:
    lte = ProbeSettings(degraded_rtt_ms=200)
    sim = Sim(lte)
    sim.run(3)
    sim.run(12, rtt=lambda seq: 0.3)
    assert sim.snap().state == "degraded"
    sim.run(12, rtt=lambda seq: 0.18)  # below 200 ms, above 0.8 x 200: stays
    assert sim.snap().state == "degraded"
    sim.run(12, rtt=lambda seq: 0.1)
    assert sim.snap().state == "up"
    geo = Sim(ProbeSettings(degraded_rtt_ms=900), rtt_s=0.6)  # 600 ms is normal there
    geo.run(10)
    assert geo.states() == ["up"]


def test_settings_are_checked_with_one_line_each() -> None:
    bads: list[dict[str, float]] = [
        {"window_s": 0}, {"down_after_s": -1}, {"up_after": 0}, {"degraded_loss_pct": 101},
        {"degraded_rtt_ms": 0}, {"clear_ratio": 0}, {"min_deadline_s": math.inf},
        {"window_s": math.nan}]
    for bad in bads:
        with pytest.raises(ValueError) as e:
            ProbeSettings(**bad)  # type: ignore[arg-type]
        assert "\n" not in str(e.value) and next(iter(bad)) in str(e.value)


def test_our_own_stall_is_not_the_links_silence() -> None:
    # The process was held up for a second: no reply was read, nothing was judged. On
    # waking it excuses itself and the link has its usual 0.3 s to be heard again.
    stats = ProbeStats(now=0.0)
    for seq in range(10):
        stats.sent(seq, seq * 0.1, stamp=seq)
        assert stats.reply(seq, seq * 0.1 + 0.05, stamp=seq) == "ok"
        stats.update(seq * 0.1 + 0.05)
    assert stats.state == "up"
    stats.excuse(2.0)
    assert not stats.update(2.0) and stats.state == "up"
    assert stats.next_check() == 2.0 + 0.3
    # ...and silence after the excuse is judged as ever
    assert stats.update(2.31)
    assert stats.snapshot(2.31).state == "down"
