"""Probes over the emulated WANs: the vehicle's probers and the centre's responder in
their own namespaces, the emulator's links between them (needs root).

The responder listens on the world's service address in the centre namespace; each
prober's socket is made in the vehicle namespace and bound to its WAN's address, so
the world's policy routing sends it out of that WAN, as in the vehicle. What the
probes report is checked against what the emulator did (its schedule, its counters),
never against a clock.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace

import pytest
from pyroute2 import AsyncIPRoute

from drivers.sim.link import netns
from drivers.sim.link.emulator import Emulator
from drivers.sim.link.profile import PROFILES, LinkProfile, LossModel, Outage
from drivers.sim.link.world import Wan, World, preflight
from edge.centre.probe_responder import ProbeResponder
from edge.links.probe_stats import LinkSnapshot, ProbeSettings
from edge.links.prober import LinkProber
from tests.support import eventually, require

PORT = 7200
# no random loss where a test asserts a link never went down: two probes lost in a row
# make a 0.3 s gap, on the edge of the down rule, and profile loss would make the
# test fail by chance once in a few hundred runs
LTE = replace(PROFILES["lte"], loss=LossModel())
GEO = replace(PROFILES["geo"], loss=LossModel())


def _need_world() -> None:
    why = preflight()
    require(why is None, f"the link emulator cannot run here: {why}")


@asynccontextmanager
async def emulated(wans: list[tuple[str, LinkProfile]]
                   ) -> AsyncIterator[tuple[World, Emulator]]:
    """A world relayed by its emulator, with a responder in the centre namespace."""
    async with World(wans) as world:
        emulator = Emulator(world, seed=7)
        emulator.start()
        responder = ProbeResponder()
        try:
            await responder.start(world.service_address, PORT,
                                  sock_factory=lambda family: netns.socket_in(world.centre,
                                                                              family))
            yield world, emulator
        finally:
            responder.close()
            emulator.stop()


def prober_for(world: World, wan: Wan, **kwargs: object) -> LinkProber:
    """A prober for `wan` as the vehicle runs one, its socket in the vehicle namespace."""
    return LinkProber(wan.name, (world.service_address, PORT), source=wan.vehicle_address,
                      sock_factory=lambda family: netns.socket_in(world.vehicle, family),
                      **kwargs)  # type: ignore[arg-type]


@asynccontextmanager
async def probing(probers: list[LinkProber]) -> AsyncIterator[None]:
    for p in probers:
        p.start()
    try:
        yield
    finally:
        for p in probers:
            await p.close()


async def test_a_cut_wan_goes_down_within_a_few_probes_while_the_other_stays_up() -> None:
    _need_world()
    async with emulated([("lte", LTE), ("geo", GEO)]) as (world, emulator):
        changes: dict[str, list[LinkSnapshot]] = {"lte": [], "geo": []}
        lte, geo = (prober_for(world, world.wan(name), on_change=changes[name].append)
                    for name in ("lte", "geo"))
        async with probing([lte, geo]):
            await eventually(lambda: lte.snapshot().state == geo.snapshot().state == "up",
                             within=15, what="both links up")
            emulator.add_outage("lte", Outage(emulator.elapsed(), 1.5))
            await eventually(lambda: lte.snapshot().state == "down", within=10,
                             what="the cut link declared down")
            down = changes["lte"][-1]
            assert down.state == "down" and down.previous == "up"
            # the goal is down within 500 ms of the cut; at 10 Hz that is the number of
            # probes that went unanswered before the decision (0.3 s of gap: 3)
            assert down.sent_since_reply <= 4
            assert geo.snapshot().state == "up"
            await eventually(lambda: lte.snapshot().state == "up", within=15,
                             what="the link up again after the outage")
            assert emulator.state("lte") == "up"
        assert [c.state for c in changes["lte"]] == ["up", "down", "up"]
        assert [c.state for c in changes["geo"]] == ["up"]  # never disturbed by the cut
        assert geo.snapshot().received >= 10


async def test_a_lossy_link_reports_the_loss_the_emulator_made() -> None:
    _need_world()
    lossy = LinkProfile("lossy", rtt_ms=50, up_mbps=10, down_mbps=10,
                        loss=LossModel(random=0.05))
    # a window longer than the run, so it holds every probe the emulator saw; a short
    # deadline (not 1 s), so few probes are still undecided when the two are compared
    settings = ProbeSettings(window_s=60, min_deadline_s=0.3)
    async with emulated([("lossy", lossy)]) as (world, emulator):
        prober = prober_for(world, world.wan("lossy"), rate_hz=50, settings=settings)
        async with probing([prober]):
            await eventually(lambda: prober.snapshot().sent >= 200, within=20,
                             what="200 probes")
            snap = prober.snapshot()
            counted = emulator.counters()["lossy"]
        up, down = counted["up"], counted["down"]
        # every packet on this link is a probe or its reply; a probe is lost if it or
        # its reply was dropped
        assert up.packets_in >= snap.sent - 1
        dropped = up.dropped_loss + down.dropped_loss
        assert dropped > 0 and up.dropped_queue == down.dropped_queue == 0
        expected = 100 * dropped / up.packets_in
        assert snap.loss_pct is not None and snap.loss_pct > 0
        # the emulator also counts drops among the ~15 probes sent in the last 0.3 s,
        # which the prober does not judge yet: about 1.5 probes in 200, under a point
        assert snap.loss_pct == pytest.approx(expected, abs=3), (snap, dropped)


async def test_a_satellite_link_reports_its_rtt_and_never_goes_down() -> None:
    _need_world()
    async with emulated([("geo", GEO)]) as (world, _emulator):
        changes: list[LinkSnapshot] = []
        # 600 ms is normal here: a per-link RTT threshold above it
        prober = prober_for(world, world.wan("geo"), on_change=changes.append,
                            settings=ProbeSettings(degraded_rtt_ms=900))
        async with probing([prober]):
            await eventually(lambda: prober.snapshot().received >= 30, within=20,
                             what="30 replies over the satellite link")
            snap = prober.snapshot()
        assert [c.state for c in changes] == ["up"]
        assert snap.state == "up" and snap.loss_pct == 0
        # the emulator keeps a profile's RTT within 1%; ±10% allows a busy shared
        # machine, and still tells 600 ms from anything else
        assert snap.rtt_ms is not None and snap.rtt_p95_ms is not None
        assert snap.rtt_ms == pytest.approx(GEO.rtt_ms, rel=0.1)
        assert snap.rtt_p95_ms >= snap.rtt_ms
        # six probes are always in flight; none of them may count as lost
        assert snap.sent - snap.received >= 4


async def _set_link(world: World, name: str, state: str) -> None:
    sock = netns.netlink_in(world.vehicle)
    try:
        async with AsyncIPRoute(use_socket=sock) as ipr:
            (index,) = await ipr.link_lookup(ifname=name)
            await ipr.link("set", index=index, state=state)
    finally:
        sock.close()


async def test_a_wan_interface_that_goes_down_is_a_send_error_and_comes_back() -> None:
    _need_world()
    async with emulated([("geo", LTE), ("lte", LTE)]) as (world, _emulator):
        # bound to its interface too: else, with its own table emptied, the probe would
        # leave by the main table's route, over the other WAN
        prober = prober_for(world, world.wan("lte"), interface="lte")
        async with probing([prober]):
            await eventually(lambda: prober.snapshot().state == "up", within=15, what="up")
            await _set_link(world, "lte", "down")
            await eventually(lambda: prober.snapshot().state == "down", within=10,
                             what="down")
            await eventually(lambda: prober.snapshot().error, within=10, what="the error")
            assert prober.snapshot().error == "no route: network is unreachable"
            sent = prober.snapshot().sent
            await eventually(lambda: prober.snapshot().sent > sent + 3, within=10,
                             what="the prober sending on")
            await _set_link(world, "lte", "up")
            await eventually(lambda: prober.snapshot().state == "up", within=15,
                             what="up again")
            assert prober.snapshot().error is None

