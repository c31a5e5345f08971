"""Interface byte counters: rates from readings, resets, and real reads over netlink."""

from __future__ import annotations

import socket

import pytest

from drivers.sim.link import netns
from drivers.sim.link.emulator import Emulator
from drivers.sim.link.profile import PROFILES
from drivers.sim.link.world import World, preflight
from edge.links.counters import CounterReading, InterfaceCounters, ThroughputMeter
from tests.support import eventually, require


def test_two_readings_give_bits_per_second_each_way() -> None:
    meter = ThroughputMeter()
    first = meter.update(CounterReading(3, rx_bytes=1000, tx_bytes=500, at=10.0))
    assert first.rx_bps is None and first.tx_bps is None  # nothing to compare with yet
    t = meter.update(CounterReading(3, rx_bytes=126_000, tx_bytes=2_500, at=12.0))
    assert t.rx_bps == 500_000 and t.tx_bps == 8_000
    assert (t.rx_total, t.tx_total) == (125_000, 2_000) and t.error is None


def test_a_recreated_interface_or_a_counter_reset_starts_over() -> None:
    meter = ThroughputMeter()
    meter.update(CounterReading(3, 10_000, 10_000, at=0.0))
    meter.update(CounterReading(3, 20_000, 30_000, at=1.0))
    # the modem re-enumerated: a new interface whose counters start near zero
    t = meter.update(CounterReading(7, 500, 100, at=2.0))
    assert t.rx_bps is None and t.tx_bps is None
    assert (t.rx_total, t.tx_total) == (10_000, 20_000)  # what was used is kept
    t = meter.update(CounterReading(7, 1_500, 600, at=3.0))
    assert (t.rx_bps, t.tx_bps) == (8_000, 4_000)
    # the same interface, counters gone backwards (a driver reset)
    t = meter.update(CounterReading(7, 100, 700, at=4.0))
    assert t.rx_bps is None
    assert (t.rx_total, t.tx_total) == (11_000, 20_500)


async def test_loopback_counters_count_what_was_sent() -> None:
    counters = InterfaceCounters("lo")
    try:
        before = await counters.read()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx, \
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
            rx.bind(("127.0.0.1", 0))
            for _ in range(100):
                tx.sendto(bytes(1000), rx.getsockname())
        after = await counters.read()
        # other tests may use lo at the same time: at least what we sent, never less
        assert after.ifindex == before.ifindex
        assert after.tx_bytes - before.tx_bytes >= 100 * 1028
        assert after.rx_bytes - before.rx_bytes >= 100 * 1028
        await counters.sample()
        t = await counters.sample()
        assert t.rx_bps is not None and t.tx_bps is not None and t.error is None
    finally:
        counters.close()


async def test_a_missing_interface_is_one_line_and_no_exception() -> None:
    counters = InterfaceCounters("nope0")
    try:
        t = await counters.sample()
    finally:
        counters.close()
    assert t.error == "no interface named nope0" and t.rx_bps is None
    with pytest.raises(ValueError, match="interface name 'a b'"):
        InterfaceCounters("a b")


async def test_a_wan_in_another_namespace_counts_what_the_emulator_relayed() -> None:
    why = preflight()
    require(why is None, f"the link emulator cannot run here: {why}")
    async with World([("lte", PROFILES["lte"])]) as world:
        emulator = Emulator(world, seed=1)
        emulator.start()
        counters = InterfaceCounters("lte", netlink=netns.netlink_in(world.vehicle))
        sender = netns.socket_in(world.vehicle)
        try:
            wan = world.wan("lte")
            sender.bind((wan.vehicle_address, 0))
            before = await counters.read()
            relayed = emulator.counters()["lte"]["up"].bytes_in
            for _ in range(20):
                sender.sendto(bytes(472), (world.service_address, 9))  # 500 B IP packets
            await eventually(lambda: emulator.counters()["lte"]["up"].bytes_in
                             >= relayed + 20 * 500, within=10, what="the emulator's read")
            after = await counters.read()
            # the interface's counter is the vehicle kernel's; the emulator read the very
            # same IP packets from the TUN: nothing else crosses this link
            assert after.tx_bytes - before.tx_bytes == \
                emulator.counters()["lte"]["up"].bytes_in - relayed == 20 * 500
        finally:
            sender.close()
            counters.close()
            emulator.stop()
