"""Telemetry from the simulator over TCP and UDP, events, link loss."""

from __future__ import annotations

from typing import Any

import pytest

from drivers.mavlink.dialect import mavlink
from drivers.mavlink.events import StatusText, VehicleDiscovered, VehicleLost, VehicleRegained
from drivers.mavlink.telemetry import Telemetry

pytestmark = pytest.mark.timeout(15)


def assert_flying_copter(t: Telemetry, home: tuple[float, float]) -> None:
    assert t.autopilot == "ARDUPILOTMEGA"
    assert t.vehicle_type == "QUADROTOR"
    assert t.mode == "GUIDED"
    assert t.armed is True
    assert t.system_status == "ACTIVE"
    assert t.lat is not None and abs(t.lat - home[0]) < 0.01
    assert t.lon is not None and abs(t.lon - home[1]) < 0.01
    assert t.alt_rel_m is not None and 45 < t.alt_rel_m < 55
    assert t.alt_msl_m is not None and t.alt_msl_m > t.alt_rel_m
    assert t.groundspeed_mps is not None and 3 < t.groundspeed_mps < 7
    assert t.heading_deg is not None and t.roll_deg is not None and t.pitch_deg is not None
    assert t.battery_pct is not None and 90 <= t.battery_pct <= 100
    assert t.battery_v is not None and 16 < t.battery_v < 17
    assert t.gps_fix == "3D_FIX" and t.satellites == 16
    assert t.home is not None and abs(t.home.lat - home[0]) < 1e-6
    assert t.link_quality_pct is not None and t.link_quality_pct > 95
    assert t.last_message_ns is not None


async def test_telemetry_over_tcp(mav: Any) -> None:
    sim = await mav.sim()
    log = mav.EventLog()
    link = await mav.link(mav.tcp_of(sim))
    link.add_event_listener(log)
    await mav.wait_until(lambda: 1 in link.vehicles and link.vehicles[1].telemetry.home)
    t = link.telemetry(1)
    assert t is not None
    assert_flying_copter(t, mav.HOME)
    assert log.of(VehicleDiscovered)[0].sysid == 1
    # the same events are there for an async consumer, in order
    first = await anext(aiter(link.events()))
    assert isinstance(first, VehicleDiscovered)
    # the sim's banner arrives as an event
    await mav.wait_until(lambda: any("ArduCopter" in e.text for e in log.of(StatusText)))


async def test_telemetry_over_udp_gcs_sends_first(mav: Any) -> None:
    # sim binds (like a vehicle on udpin), we send to it: our GCS HEARTBEAT
    # is what tells it where to answer
    sim = await mav.sim("udpin:127.0.0.1:0")
    link = await mav.link(f"udpout:127.0.0.1:{sim.address[1]}")
    await mav.wait_until(lambda: 1 in link.vehicles and link.vehicles[1].telemetry.home)
    assert_flying_copter(link.vehicles[1].telemetry, mav.HOME)


async def test_telemetry_over_udp_vehicle_sends_first(mav: Any) -> None:
    # like SITL's --out udp:GCS:14550 with the GCS on udpin
    link = await mav.link("udpin:127.0.0.1:0")
    port = link.connection.transport.local_address[1]
    await mav.sim(f"udpout:127.0.0.1:{port}")
    await mav.wait_until(lambda: 1 in link.vehicles and link.vehicles[1].telemetry.home)
    assert_flying_copter(link.vehicles[1].telemetry, mav.HOME)


async def test_rates_requested_and_honoured(mav: Any) -> None:
    sim, link = await mav.pair()
    # the link asks for its telemetry set on discovery; ATTITUDE at 10 Hz
    await mav.wait_until(
        lambda: sim.generator.interval_s(mavlink.MAVLINK_MSG_ID_GIMBAL_DEVICE_ATTITUDE_STATUS)
    )
    assert sim.generator.interval_s(mavlink.MAVLINK_MSG_ID_ATTITUDE) == pytest.approx(0.1)
    # The link counts what arrives. Only "some": how many a second is the vehicle's output
    # and the machine's load, a figure rather than a behaviour.
    await mav.wait_until(lambda: link.vehicles[1].telemetry.msgs_per_s > 0, within_s=10)


async def test_chunked_statustext_is_reassembled(mav: Any) -> None:
    sim, link = await mav.pair()
    log = mav.EventLog()
    link.add_event_listener(log)
    text = "PreArm: " + "very long explanation of what is wrong " * 3
    assert len(text) > 100
    sim.say(mavlink.MAV_SEVERITY_WARNING, text)
    await mav.wait_until(lambda: log.of(StatusText))
    event = log.of(StatusText)[0]
    assert event.text == text
    assert event.severity == "WARNING" and event.level == "warning"


async def test_lost_and_regained(mav: Any) -> None:
    sim = await mav.sim()
    link = await mav.link(mav.tcp_of(sim), lost_after_s=0.4)
    log = mav.EventLog()
    link.add_event_listener(log)
    await mav.wait_until(lambda: 1 in link.vehicles)
    sim.go_silent(1.0)
    lost = (await mav.wait_until(lambda: log.of(VehicleLost), within_s=3))[0]
    assert lost.sysid == 1 and lost.silent_s >= 0.4 and lost.level == "critical"
    assert link.vehicles[1].telemetry.lost is True
    regained = (await mav.wait_until(lambda: log.of(VehicleRegained), within_s=3))[0]
    assert regained.lost_for_s >= 0.8
    assert link.vehicles[1].telemetry.lost is False
    assert len(log.of(VehicleLost)) == 1


async def test_garbage_on_the_line(mav: Any) -> None:
    sim, link = await mav.pair(garbage=True)
    seen_before = link.stats.frames
    await mav.wait_until(lambda: link.stats.frames > seen_before + 60, within_s=5)
    stats = link.stats
    assert stats.bad_bytes > 0 and stats.crc_errors > 0
    assert sim.stats.garbage_bytes > 0 and sim.stats.frames_corrupted > 0
    t = link.vehicles[1].telemetry
    assert t.mode == "GUIDED" and t.lat is not None
    # lost frames show up as sequence gaps
    assert t.link_quality_pct is not None and t.link_quality_pct < 100


async def test_tcp_reconnects_and_several_ground_stations_share_the_sim(mav: Any) -> None:
    sim = await mav.sim()
    port = sim.address[1]
    first = await mav.link(mav.tcp_of(sim), lost_after_s=0.5)
    second = await mav.link(mav.tcp_of(sim), source_system=254)
    log = mav.EventLog()
    first.add_event_listener(log)
    await mav.wait_until(lambda: 1 in first.vehicles and 1 in second.vehicles)
    assert sim.conn.transport.peer_count == 2
    await sim.stop()  # the vehicle reboots...
    await mav.wait_until(lambda: log.of(VehicleLost))
    await mav.sim(f"tcp:127.0.0.1:{port}")  # ...and comes back on the same port
    await mav.wait_until(lambda: log.of(VehicleRegained), within_s=5)
    assert first.connection.transport.connects == 2
