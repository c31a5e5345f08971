"""The relay: reads each TUN, runs its packets through a :class:`Path`, writes the far TUN.

One asyncio loop serves every WAN and direction: ``loop.add_reader`` on each TUN fd,
and one timer per direction for its next release. Serialisation and delay are kept
in virtual time by the Path, so the loop's lateness never accumulates into the rate;
what remains is each release's own lateness.

That lateness is asyncio's: ``epoll_wait`` takes milliseconds, so the selector
rounds a timeout *up* to the next whole millisecond and a timer fires 0-1 ms late,
per direction. Measured at 50 ms RTT that was 51.6 ms (+3%). Each timer is therefore
set `lead_s` (0.5 ms) early and releases what is due within `lead_s` of its firing,
which centres the error on zero: 50.5-50.6 ms, of which 0.3 ms is the sockets and
TUNs themselves (a zero-delay profile measures 0.27-0.31 ms). Rates came within
0.6% at 4, 8, 10 and 20 Mbit/s. So one loop keeps ±1% and no thread is needed; a
relay thread would also contend with the loop for the GIL on every packet.
"""

from __future__ import annotations

import asyncio
import os
import random
from dataclasses import dataclass, field, replace

from drivers.sim.link.path import Direction, Path, PathCounters, Schedule
from drivers.sim.link.profile import Outage
from drivers.sim.link.world import World

LEAD_S = 0.0005
_READ_BATCH = 256  # packets read per wake-up before other fds get a turn
_MAX_PACKET = 65535


@dataclass(eq=False)
class _Relay:
    wan: str
    direction: Direction
    path: Path
    in_fd: int
    out_fd: int
    timer: asyncio.TimerHandle | None = None
    timer_at: float = field(default=float("inf"))


class Emulator:
    """Relays every WAN of a :class:`World` through its profile, until :meth:`stop`."""

    def __init__(self, world: World, *, seed: int | None = None, lead_s: float = LEAD_S) -> None:
        self.world = world
        self.seed = seed if seed is not None else random.SystemRandom().randrange(2**31)
        self._lead = lead_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self._t0 = 0.0
        self._stopped_after: float | None = None
        self._schedules: dict[str, Schedule] = {}
        self._relays: list[_Relay] = []

    def start(self) -> None:
        """Start relaying in the running event loop; scripted times count from now."""
        loop = asyncio.get_running_loop()
        self._loop = loop
        for wan in self.world.wans:
            # one random stream per purpose, derived from the seed: a run is repeatable
            rng = random.Random(f"{self.seed}/{wan.name}/schedule")
            schedule = Schedule(wan.profile.outages, wan.profile.stalls, rng)
            self._schedules[wan.name] = schedule
            vehicle_fd, centre_fd = self.world.fds[wan.name]
            ends: tuple[tuple[Direction, int, int], ...] = (("up", vehicle_fd, centre_fd),
                                                            ("down", centre_fd, vehicle_fd))
            for direction, in_fd, out_fd in ends:
                path = Path.for_profile(wan.profile, direction, schedule,
                                        random.Random(f"{self.seed}/{wan.name}/{direction}"))
                self._relays.append(_Relay(wan.name, direction, path, in_fd, out_fd))
        self._t0 = loop.time()
        for relay in self._relays:
            self._drain(relay.in_fd)  # what the kernel sent before we listened
            loop.add_reader(relay.in_fd, self._on_readable, relay)

    def stop(self) -> None:
        """Stop relaying: readers removed, what is queued or in flight is abandoned."""
        if self._loop is None:
            return
        self._stopped_after = self.elapsed()
        for relay in self._relays:
            self._loop.remove_reader(relay.in_fd)
            if relay.timer is not None:
                relay.timer.cancel()
                relay.timer = None
        self._loop = None

    # -- what callers read ---------------------------------------------------------------
    def elapsed(self) -> float:
        """Seconds since start (scripted times count from there), until stopped."""
        if self._loop is None:
            return self._stopped_after or 0.0
        return self._loop.time() - self._t0

    def counters(self) -> dict[str, dict[Direction, PathCounters]]:
        """A copy of every direction's counters, by WAN name."""
        out: dict[str, dict[Direction, PathCounters]] = {}
        for relay in self._relays:
            out.setdefault(relay.wan, {})[relay.direction] = replace(relay.path.counters)
        return out

    def state(self, wan: str) -> str:
        """``up``, ``down`` or ``stalled`` now."""
        return self._schedules[wan].state_at(self.elapsed())

    def add_outage(self, wan: str, outage: Outage) -> None:
        """Schedule an outage of `wan` (times from the start), e.g. from a test or a script."""
        self._schedules[wan].add(outage)
        for relay in self._relays:
            if relay.wan == wan:
                self._rearm(relay, force=True)

    # -- the relay -----------------------------------------------------------------------
    @staticmethod
    def _drain(fd: int) -> None:
        try:
            while os.read(fd, _MAX_PACKET):
                pass
        except BlockingIOError:
            pass

    def _on_readable(self, relay: _Relay) -> None:
        assert self._loop is not None
        now = self._loop.time() - self._t0
        path = relay.path
        for _ in range(_READ_BATCH):
            try:
                packet = os.read(relay.in_fd, _MAX_PACKET)
            except BlockingIOError:
                break
            except OSError:
                break  # the interface is going away as the world closes
            path.offer(packet, now)
        self._rearm(relay)

    def _rearm(self, relay: _Relay, force: bool = False) -> None:
        if self._loop is None:
            return
        when = relay.path.next_release()
        if when is None:
            if relay.timer is not None:
                relay.timer.cancel()
                relay.timer, relay.timer_at = None, float("inf")
            return
        if relay.timer is not None and relay.timer_at <= when and not force:
            return  # the armed timer comes first; it re-arms after firing
        if relay.timer is not None:
            relay.timer.cancel()
        relay.timer_at = when
        relay.timer = self._loop.call_at(self._t0 + when - self._lead, self._release, relay)

    def _release(self, relay: _Relay) -> None:
        assert self._loop is not None
        relay.timer, relay.timer_at = None, float("inf")
        now = self._loop.time() - self._t0 + self._lead
        for packet in relay.path.release(now):
            try:
                os.write(relay.out_fd, packet)
                ok = True
            except OSError:
                ok = False
            relay.path.delivered(packet, ok)
        self._rearm(relay)
