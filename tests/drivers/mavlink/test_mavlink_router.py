"""An independent pymavlink (mavutil) ground station through the router."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from drivers.mavlink.dialect import mavlink
from drivers.mavlink.events import SigningRefused
from drivers.mavlink.router import Endpoint, MavRouter

pytestmark = pytest.mark.timeout(20)

KEY = bytes(range(32))
RTL = mavlink.MAV_CMD_NAV_RETURN_TO_LAUNCH


def port_of(router: MavRouter, name: str) -> int:
    address = router.address(name)
    assert address is not None
    return address[1]


async def test_rw_endpoint_over_udp_sees_vehicle_and_commands_it(
    mav: Any, make_router: Any, gcs: Any
) -> None:
    sim, link, router = await make_router([Endpoint.build("qgc", "udpin:127.0.0.1:0", "rw")])
    client = gcs(f"udpout:127.0.0.1:{port_of(router, 'qgc')}")
    client.heartbeat()  # how a udpin endpoint learns where the GCS is
    hb = await client.recv("HEARTBEAT", 3, autopilot=mavlink.MAV_AUTOPILOT_ARDUPILOTMEGA)
    assert hb is not None and hb.get_srcSystem() == 1 and hb.type == mavlink.MAV_TYPE_QUADROTOR
    gps = await client.recv("GLOBAL_POSITION_INT", 3)
    assert gps is not None and abs(gps.lat * 1e-7 - mav.HOME[0]) < 0.01
    client.command(RTL)
    ack = await client.recv("COMMAND_ACK", 3, command=RTL)
    assert ack is not None and ack.result == mavlink.MAV_RESULT_ACCEPTED
    assert ack.target_system == 250
    await mav.wait_until(lambda: link.vehicles[1].telemetry.mode == "RTL")
    assert router.stats["qgc"].from_endpoint >= 2 and router.stats["qgc"].to_endpoint > 10


async def test_udpout_endpoint_reaches_a_listening_gcs(
    mav: Any, make_router: Any, gcs: Any
) -> None:
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    client = gcs(f"udpin:127.0.0.1:{port}")  # like QGroundControl on 14550
    await make_router([Endpoint.build("centre", f"udpout:127.0.0.1:{port}", "rw")])
    hb = await client.recv("HEARTBEAT", 3, autopilot=mavlink.MAV_AUTOPILOT_ARDUPILOTMEGA)
    assert hb is not None and hb.get_srcSystem() == 1
    client.command(RTL)  # mavutil answers to the address it last heard from
    ack = await client.recv("COMMAND_ACK", 3, command=RTL)
    assert ack is not None and ack.result == mavlink.MAV_RESULT_ACCEPTED


async def test_ro_endpoint_over_tcp_sees_vehicle_but_cannot_command(
    mav: Any, make_router: Any, gcs: Any
) -> None:
    sim, link, router = await make_router(
        [
            Endpoint.build("viewer", "tcpin:127.0.0.1:0", "ro"),
            Endpoint.build("filtered", "tcpin:127.0.0.1:0", "rw", deny=["ATTITUDE"]),
        ]
    )
    client = gcs(f"tcp:127.0.0.1:{port_of(router, 'viewer')}")
    hb = await client.recv("HEARTBEAT", 3, autopilot=mavlink.MAV_AUTOPILOT_ARDUPILOTMEGA)
    assert hb is not None and hb.get_srcSystem() == 1
    client.heartbeat()
    client.command(RTL)
    assert await client.recv("COMMAND_ACK", 1.0, command=RTL) is None
    stats = router.stats["viewer"]
    assert stats.refused_ro == 1 and stats.from_endpoint >= 1  # the heartbeat passed
    assert link.vehicles[1].telemetry.mode == "GUIDED"
    assert router.stats["filtered"].filtered > 0


async def test_signed_router_refuses_unsigned_commands(
    mav: Any, make_router: Any, gcs: Any
) -> None:
    sim, link, router = await make_router(
        [Endpoint.build("qgc", "tcpin:127.0.0.1:0", "rw")], signing_key=KEY
    )
    log = mav.EventLog()
    link.add_event_listener(log)
    port = port_of(router, "qgc")
    unsigned = gcs(f"tcp:127.0.0.1:{port}")
    assert await unsigned.recv("HEARTBEAT", 3) is not None
    unsigned.command(RTL)
    refused = (await mav.wait_until(lambda: log.of(SigningRefused)))[0]
    assert refused.message == "COMMAND_LONG" and refused.source == "qgc" and refused.sysid == 250
    assert router.stats["qgc"].refused_unsigned == 1
    assert await unsigned.recv("COMMAND_ACK", 0.5, command=RTL) is None

    signed = gcs(f"tcp:127.0.0.1:{port}", key=KEY)
    assert await signed.recv("HEARTBEAT", 3) is not None
    signed.command(RTL)
    ack = await signed.recv("COMMAND_ACK", 3, command=RTL)
    assert ack is not None and ack.result == mavlink.MAV_RESULT_ACCEPTED


def test_endpoint_validation() -> None:
    with pytest.raises(ValueError, match="mode"):
        Endpoint.build("x", "udpin:0.0.0.0:14550", "rx")
    with pytest.raises(ValueError, match="NOT_A_MESSAGE"):
        Endpoint.build("x", "udpin:0.0.0.0:14550", allow=["NOT_A_MESSAGE"])
    with pytest.raises(ValueError, match="udpout, udpin or tcpin"):
        Endpoint.build("x", "tcp:10.0.0.1:5760")
    ep = Endpoint.build("x", "udpout:10.0.0.1:14550", allow=["HEARTBEAT", 33])
    assert ep.passes(0) and ep.passes(33) and not ep.passes(30)
