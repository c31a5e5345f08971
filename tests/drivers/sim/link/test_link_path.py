"""One direction of an emulated link, driven by explicit times (no sockets, no root).

The Path takes the time as an argument, so these check its arithmetic exactly:
serialisation, delay, drop-tail, outages, stalls, and the loss models' statistics.
The end-to-end accuracy over real TUNs is tests/drivers/sim/test_link_emulator.py.
"""

from __future__ import annotations

import math
import random
import re

import pytest

from drivers.sim.link.path import LossProcess, Path, Schedule
from drivers.sim.link.profile import (
    PROFILES,
    GilbertElliott,
    LossModel,
    Outage,
    PeriodicStalls,
)
from drivers.sim.link.script import ScriptedOutage, parse_script

MBIT = 1e6


def path(rate_bps: float = 1 * MBIT, delay_s: float = 0.1, queue: int = 100_000,
         loss: LossModel | None = None, schedule: Schedule | None = None) -> Path:
    return Path(rate_bps, delay_s, queue, LossProcess(loss or LossModel(), random.Random(1)),
                schedule or Schedule())


def drain(p: Path) -> list[tuple[float, bytes]]:
    """Every release, at the times the path asks to be woken."""
    out = []
    while (t := p.next_release()) is not None:
        out += [(t, packet) for packet in p.release(t)]
    return out


def test_packets_are_serialised_at_the_rate_then_delayed() -> None:
    p = path(rate_bps=1 * MBIT, delay_s=0.1)
    for i in range(5):
        p.offer(bytes([i]) * 1250, now=0.0)  # 1250 B at 1 Mbit/s: 10 ms each
    released = drain(p)
    assert [packet[0] for _, packet in released] == [0, 1, 2, 3, 4]
    assert [t for t, _ in released] == pytest.approx([0.11, 0.12, 0.13, 0.14, 0.15])


def test_an_idle_link_serialises_from_the_packets_arrival() -> None:
    p = path(rate_bps=1 * MBIT, delay_s=0.3)
    p.offer(b"x" * 125, now=5.0)  # 1 ms
    ((t, packet),) = drain(p)
    assert packet == b"x" * 125 and t == pytest.approx(5.301)


def test_the_modem_buffer_drops_tail_beyond_its_bytes() -> None:
    p = path(rate_bps=1 * MBIT, queue=5000)
    for _ in range(10):
        p.offer(b"x" * 1250, now=0.0)
    # the first is on the air at once; four wait in the 5000-byte buffer; five are dropped
    c = p.counters
    assert (c.dropped_queue, c.queue_bytes, c.queue_packets) == (5, 5000, 4)
    assert len(drain(p)) == 5
    assert (c.queue_bytes, c.packets_in, c.packets_out + c.dropped_queue) == (0, 10, 5)


def test_a_down_outage_drops_what_is_offered_queued_or_in_flight() -> None:
    schedule = Schedule((Outage(1.0, 2.0, "down"),))
    p = path(rate_bps=1 * MBIT, delay_s=0.3, schedule=schedule)
    for name in b"abc":  # 100 ms each on the air, from 0.85
        p.offer(bytes([name]) * 12_500, now=0.85)
    # a: on the air 0.85-0.95, in flight when the link goes; b: on the air across the
    # moment it goes; c: still in the buffer then, which the lost carrier empties
    p.offer(b"d" * 125, now=1.5)   # offered while down
    p.offer(b"e" * 125, now=3.0)   # after: delivered
    released = drain(p)
    assert [packet[:1] for _, packet in released] == [b"e"]
    assert p.counters.dropped_outage == 4
    assert released[0][0] == pytest.approx(3.301)  # the empty buffer did not delay it


def test_a_stall_holds_the_queue_and_sends_it_afterwards() -> None:
    schedule = Schedule((Outage(1.0, 2.0, "stall"),))
    p = path(rate_bps=1 * MBIT, delay_s=0.1, queue=500, schedule=schedule)
    for i in range(6):
        p.offer(bytes([i]) * 125, now=1.5)  # buffer holds 4 of 125 B
    assert p.counters.dropped_queue == 2
    released = drain(p)
    assert [t for t, _ in released] == pytest.approx([3.101, 3.102, 3.103, 3.104])


def test_periodic_stalls_come_every_period_and_last_between_bounds() -> None:
    schedule = Schedule(stalls=PeriodicStalls(every_s=15, min_s=1, max_s=2),
                        rng=random.Random(3))
    assert schedule.serve_from(14.9) == 14.9
    for k in range(1, 20):
        end = schedule.serve_from(15.0 * k)
        assert 15.0 * k + 1 <= end <= 15.0 * k + 2
        assert schedule.state_at(15.0 * k + 0.5) == "stalled"
        assert schedule.state_at(end) == "up"


def test_random_loss_is_decided_on_the_air_and_costs_airtime() -> None:
    p = path(rate_bps=1 * MBIT, delay_s=0.0, queue=200_000, loss=LossModel(random=0.5))
    for i in range(100):
        p.offer(bytes([i]) * 1250, now=0.0)
    released = drain(p)
    assert 0 < p.counters.dropped_loss < 100
    assert len(released) + p.counters.dropped_loss == 100
    # packet i leaves at (i + 1) x 10 ms whatever was lost before it: a lost packet
    # took its airtime
    assert [t for t, _ in released] == pytest.approx([(pkt[0] + 1) * 0.01
                                                      for _, pkt in released])


def test_gilbert_elliott_bursts_give_their_mean_and_burst_length() -> None:
    ge = GilbertElliott(p=0.01, r=0.25)  # mean loss 3.85%, bursts of 4 packets
    loss = LossProcess(LossModel(burst=ge), random.Random(7))
    n = 200_000
    lost = [loss.lost() for _ in range(n)]
    mean = ge.mean()
    # a two-state chain's losses are correlated: the variance of their count is the
    # binomial one times (1 + lambda) / (1 - lambda), lambda = 1 - p - r; 5 sigma
    lam = 1 - ge.p - ge.r
    sigma = math.sqrt(n * mean * (1 - mean) * (1 + lam) / (1 - lam))
    assert abs(sum(lost) - n * mean) <= 5 * sigma
    bursts = [len(run) for run in "".join("x" if x else "." for x in lost).split(".") if run]
    assert 3 <= sum(bursts) / len(bursts) <= 5


def test_profiles_say_what_the_issue_asks() -> None:
    geo, bad, leo, lte = (PROFILES[n] for n in ("geo", "geo-bad", "leo", "lte"))
    assert (geo.rtt_ms, geo.up_mbps, geo.down_mbps, geo.loss.mean()) == (600, 4, 8, 0.005)
    assert bad.loss.mean() == 0.02
    assert leo.rtt_ms == 50 and leo.stalls == PeriodicStalls(15, 1, 2)
    assert (lte.rtt_ms, lte.up_mbps, lte.loss.mean()) == (50, 10, 0.002)
    assert geo.queue_limit("up") == 125_000  # 250 ms at 4 Mbit/s


def test_scripts_name_links_times_and_kinds() -> None:
    assert parse_script("lte down at 30s for 60s; stall at 2m for 500ms", ["lte", "sat"]) == [
        ScriptedOutage("lte", Outage(30, 60, "down")),
        ScriptedOutage(None, Outage(120, 0.5, "stall")),
    ]


@pytest.mark.parametrize(("script", "says"), [
    ("down at 30s", "expected '[LINK] down|stall at TIME for DURATION'"),
    ("down at soon for 5s", "expected a time like 30s"),
    ("down at 3s for 0s", "more than 0"),
    ("sat down at 3s for 1s", "no link named 'sat'"),
    (" ; ", "empty script"),
])
def test_a_bad_script_says_what_is_wrong(script: str, says: str) -> None:
    with pytest.raises(ValueError, match=re.escape(says)):
        parse_script(script, ["lte"])
