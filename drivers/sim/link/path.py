"""One direction of an emulated link: a modem buffer, a serialiser and a propagation delay.

A :class:`Path` is a discrete-event model with no clock of its own: the relay hands
it packets with the time they arrived (:meth:`Path.offer`) and asks it, at the time
it named (:meth:`Path.next_release`), for the packets that reach the far end then
(:meth:`Path.release`). Times are seconds from the emulator's start.

Each packet waits in a drop-tail FIFO of bounded bytes (the modem's buffer), is
serialised at the link rate once the one before it is done (virtual time, so a late
wake-up of the relay never slows the link down), then travels for the one-way delay.
Loss is decided when the packet goes on the air, so a lost packet still costs airtime,
as on a real radio. A ``down`` outage drops whatever is offered, starts transmission
or would arrive during it; a ``stall`` stops the serialiser while the buffer keeps
filling.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import asdict, dataclass
from typing import Literal

from drivers.sim.link.profile import GilbertElliott, LinkProfile, LossModel, Outage, PeriodicStalls

Direction = Literal["up", "down"]


@dataclass(slots=True)
class PathCounters:
    packets_in: int = 0
    bytes_in: int = 0
    packets_out: int = 0
    bytes_out: int = 0
    dropped_loss: int = 0
    dropped_queue: int = 0
    dropped_outage: int = 0
    #: the far end's TUN refused the packet (interface gone while stopping)
    write_errors: int = 0
    queue_bytes: int = 0
    queue_packets: int = 0
    queue_peak_bytes: int = 0
    queue_limit_bytes: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class Schedule:
    """When one link is down or stalled; shared by its two directions."""

    def __init__(self, outages: tuple[Outage, ...] = (), stalls: PeriodicStalls | None = None,
                 rng: random.Random | None = None) -> None:
        self._outages: list[Outage] = sorted(outages, key=lambda o: o.start_s)
        self._stalls = stalls
        self._rng = rng or random.Random()
        self._stall_lengths: list[float] = []  # of periodic stall k+1, drawn in order

    def add(self, outage: Outage) -> None:
        self._outages.append(outage)
        self._outages.sort(key=lambda o: o.start_s)

    def _periodic_at(self, t: float) -> tuple[float, float] | None:
        s = self._stalls
        if s is None or t < s.every_s:
            return None
        k = int(t // s.every_s)
        while len(self._stall_lengths) < k:
            self._stall_lengths.append(self._rng.uniform(s.min_s, s.max_s))
        start = k * s.every_s
        end = start + self._stall_lengths[k - 1]
        return (start, end) if t < end else None

    def down_at(self, t: float) -> bool:
        return any(o.kind == "down" and o.start_s <= t < o.end_s for o in self._outages)

    def serve_from(self, t: float) -> float:
        """The first moment at or after `t` when the transmitter is not stalled."""
        while True:
            moved = t
            if (p := self._periodic_at(t)) is not None:
                moved = p[1]
            for o in self._outages:
                if o.kind == "stall" and o.start_s <= moved < o.end_s:
                    moved = o.end_s
            if moved == t:
                return t
            t = moved

    def state_at(self, t: float) -> str:
        if self.down_at(t):
            return "down"
        return "stalled" if self.serve_from(t) > t else "up"


class LossProcess:
    """Per-packet loss decisions of a :class:`LossModel`, from its own random stream."""

    def __init__(self, model: LossModel, rng: random.Random) -> None:
        self._random = model.random
        self._burst: GilbertElliott | None = model.burst
        self._rng = rng
        self._bad = False

    def lost(self) -> bool:
        rnd = self._rng.random
        ge = self._burst
        burst_lost = False
        if ge is not None:
            self._bad = (rnd() >= ge.r) if self._bad else (rnd() < ge.p)
            burst_lost = rnd() < (ge.loss_in_bad if self._bad else ge.loss_in_good)
        random_lost = self._random > 0 and rnd() < self._random
        return burst_lost or random_lost


class Path:
    def __init__(self, rate_bps: float, delay_s: float, queue_limit: int, loss: LossProcess,
                 schedule: Schedule) -> None:
        if rate_bps <= 0:
            raise ValueError("a link's rate must be more than 0")
        self._byte_time = 8 / rate_bps
        self._delay = delay_s
        self._loss = loss
        self._schedule = schedule
        self._queue: deque[tuple[float, bytes]] = deque()  # (offered at, packet)
        self._free_at = 0.0  # the serialiser finishes its current packet then
        self._flight: deque[tuple[float, bytes]] = deque()  # (arrives at, packet), in order
        self.counters = PathCounters(queue_limit_bytes=queue_limit)

    @classmethod
    def for_profile(cls, profile: LinkProfile, direction: Direction, schedule: Schedule,
                    rng: random.Random) -> Path:
        return cls(profile.rate_bps(direction), profile.one_way_s,
                   profile.queue_limit(direction), LossProcess(profile.loss, rng), schedule)

    def offer(self, packet: bytes, now: float) -> None:
        """A packet entered the modem at `now`."""
        self._advance(now)
        c = self.counters
        size = len(packet)
        c.packets_in += 1
        c.bytes_in += size
        if self._schedule.down_at(now):
            c.dropped_outage += 1
            return
        if c.queue_bytes + size > c.queue_limit_bytes:
            c.dropped_queue += 1
            return
        self._queue.append((now, packet))
        c.queue_bytes += size
        c.queue_packets += 1
        c.queue_peak_bytes = max(c.queue_peak_bytes, c.queue_bytes)
        self._advance(now)

    def _head_start(self) -> float:
        offered_at, _ = self._queue[0]
        return self._schedule.serve_from(max(self._free_at, offered_at))

    def _advance(self, now: float) -> None:
        """Put on the air every queued packet whose transmission starts by `now`."""
        c = self.counters
        while self._queue:
            start = self._head_start()
            if start > now:
                return
            _, packet = self._queue.popleft()
            size = len(packet)
            c.queue_bytes -= size
            c.queue_packets -= 1
            if self._schedule.down_at(start):
                self._free_at = start  # the carrier is gone: the buffer empties at once
                c.dropped_outage += 1
                continue
            self._free_at = start + size * self._byte_time
            if self._loss.lost():
                c.dropped_loss += 1
                continue
            self._flight.append((self._free_at + self._delay, packet))

    def next_release(self) -> float | None:
        """When the next packet reaches the far end (or a queued one must be dropped)."""
        times = []
        if self._flight:
            times.append(self._flight[0][0])
        if self._queue:
            start = self._head_start()
            _, packet = self._queue[0]
            # a packet the outage will drop needs a wake-up only to be counted
            times.append(start if self._schedule.down_at(start)
                         else start + len(packet) * self._byte_time + self._delay)
        return min(times) if times else None

    def release(self, now: float) -> list[bytes]:
        """The packets that have reached the far end by `now`, in order."""
        self._advance(now)
        out: list[bytes] = []
        c = self.counters
        while self._flight and self._flight[0][0] <= now:
            arrives, packet = self._flight.popleft()
            if self._schedule.down_at(arrives):
                c.dropped_outage += 1
                continue
            out.append(packet)
        return out

    def delivered(self, packet: bytes, ok: bool) -> None:
        """Count a released packet once the far end took it (or refused it)."""
        c = self.counters
        if ok:
            c.packets_out += 1
            c.bytes_out += len(packet)
        else:
            c.write_errors += 1
