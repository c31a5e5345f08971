"""What an emulated WAN link does to packets: delay, rate, modem buffer, loss, outages.

A :class:`LinkProfile` describes both directions of one link ("up" is vehicle → centre).
Rates count IP packet bytes (the TUN carries IP packets, no link-layer framing), in
SI units (1 Mbit/s = 10**6 bit/s) as link datasheets quote them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Literal

OutageKind = Literal["down", "stall"]

#: the modem buffer never holds less than one full-size packet, or nothing would pass
MIN_QUEUE_BYTES = 1500


@dataclass(frozen=True, slots=True)
class GilbertElliott:
    """Two-state burst loss: per packet, good→bad with `p`, bad→good with `r`."""

    p: float
    r: float
    loss_in_bad: float = 1.0
    loss_in_good: float = 0.0

    def mean(self) -> float:
        """The long-run fraction lost (stationary distribution of the two states)."""
        bad = self.p / (self.p + self.r) if self.p + self.r > 0 else 0.0
        return bad * self.loss_in_bad + (1 - bad) * self.loss_in_good

    def mean_burst(self) -> float:
        """Mean run of packets spent in the bad state."""
        return math.inf if self.r == 0 else 1 / self.r


@dataclass(frozen=True, slots=True)
class LossModel:
    """Independent random loss, and optionally Gilbert-Elliott bursts on top of it."""

    random: float = 0.0
    burst: GilbertElliott | None = None

    def mean(self) -> float:
        if self.burst is None:
            return self.random
        return 1 - (1 - self.random) * (1 - self.burst.mean())


@dataclass(frozen=True, slots=True)
class Outage:
    """One scripted event, in seconds from the emulator's start.

    ``down``: the link is gone; everything offered, queued or in flight during it is
    dropped (the modem loses its buffer with the carrier). ``stall``: the link stops
    serving but the modem keeps buffering (a LEO handover), so its queue fills and
    overflows, and what it held is sent when the link resumes.
    """

    start_s: float
    duration_s: float
    kind: OutageKind = "down"

    @property
    def end_s(self) -> float:
        return self.start_s + self.duration_s


@dataclass(frozen=True, slots=True)
class PeriodicStalls:
    """A stall every `every_s` seconds (the first at `every_s`), lasting min_s..max_s."""

    every_s: float
    min_s: float
    max_s: float


@dataclass(frozen=True, slots=True)
class LinkProfile:
    name: str
    rtt_ms: float
    up_mbps: float
    down_mbps: float
    loss: LossModel = LossModel()
    #: the modem's buffer, in milliseconds at the direction's rate (bufferbloat is
    #: quoted in time); `queue_bytes` overrides it with a fixed size
    queue_ms: float = 200.0
    queue_bytes: int | None = None
    outages: tuple[Outage, ...] = ()
    stalls: PeriodicStalls | None = None
    description: str = field(default="", compare=False)

    @property
    def one_way_s(self) -> float:
        """Propagation delay per direction: the RTT split evenly (GEO and LEO are symmetric)."""
        return self.rtt_ms / 2000

    def rate_bps(self, direction: Literal["up", "down"]) -> float:
        return (self.up_mbps if direction == "up" else self.down_mbps) * 1e6

    def queue_limit(self, direction: Literal["up", "down"]) -> int:
        if self.queue_bytes is not None:
            return max(MIN_QUEUE_BYTES, self.queue_bytes)
        return max(MIN_QUEUE_BYTES, int(self.rate_bps(direction) * self.queue_ms / 8000))

    def with_outages(self, *outages: Outage) -> LinkProfile:
        return replace(self, outages=self.outages + outages)

    def summary(self) -> str:
        parts = [f"RTT {self.rtt_ms:g} ms", f"up {self.up_mbps:g} Mbit/s",
                 f"down {self.down_mbps:g} Mbit/s", f"loss {self.loss.mean() * 100:g}%"]
        if self.loss.burst:
            parts[-1] += f" (bursts of {self.loss.burst.mean_burst():g} packets)"
        parts.append(f"queue {self.queue_bytes} B" if self.queue_bytes is not None
                     else f"queue {self.queue_ms:g} ms")
        if self.stalls:
            s = self.stalls
            parts.append(f"{s.min_s:g}-{s.max_s:g} s stall every {s.every_s:g} s")
        return ", ".join(parts)


# Buffers: satellite modems and LTE base stations buffer hundreds of milliseconds
# (bufferbloat is what the uplink's congestion control must live with); LEO terminals
# buffer less. These are assumptions, chosen so that a stream overdriving the link sees
# queueing delay first and drops second, as on the real links.
PROFILES: dict[str, LinkProfile] = {p.name: p for p in (
    LinkProfile("geo", rtt_ms=600, up_mbps=4, down_mbps=8, loss=LossModel(random=0.005),
                queue_ms=250, description="geostationary satellite (VSAT)"),
    LinkProfile("geo-bad", rtt_ms=600, up_mbps=4, down_mbps=8, loss=LossModel(random=0.02),
                queue_ms=250, description="geostationary satellite in rain fade"),
    LinkProfile("leo", rtt_ms=50, up_mbps=10, down_mbps=20, loss=LossModel(random=0.001),
                queue_ms=100, stalls=PeriodicStalls(every_s=15, min_s=1, max_s=2),
                description="low-earth-orbit satellite, a handover stall every 15 s"),
    LinkProfile("lte", rtt_ms=50, up_mbps=10, down_mbps=10, loss=LossModel(random=0.002),
                queue_ms=150, description="4G private network"),
)}


def profile_named(name: str) -> LinkProfile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown link profile {name!r}; known: {', '.join(PROFILES)}"
                         ) from None
