"""WS-Discovery: a Probe, unicast or multicast on loopback, finds the simulated camera."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest

from drivers.sim.camera import SimCamera
from drivers.sim.onvif import PtzState, SimOnvifDevice
from tests.support import free_port
from tests.support.onvif_sim import probe

# A private group and port: the test must not answer (or be answered by) real devices.
GROUP = "239.255.255.251"


@pytest.fixture
async def device() -> AsyncIterator[SimOnvifDevice]:
    # The camera is not started: discovery only needs the device's HTTP address.
    camera = SimCamera("gate cam")
    onvif = SimOnvifDevice(camera, PtzState(), discovery_port=free_port(socket.SOCK_DGRAM),
                           discovery_group=GROUP, discovery_interface="127.0.0.1")
    async with onvif:
        yield onvif


async def test_a_unicast_probe_finds_the_device(device: SimOnvifDevice) -> None:
    assert device.discovery is not None
    # By either ONVIF type, both, or none (any device).
    for types in ("dn:NetworkVideoTransmitter", "tds:Device",
                  "dn:NetworkVideoTransmitter tds:Device", ""):
        [match] = await asyncio.to_thread(probe, ("127.0.0.1", device.discovery.port),
                                          types=types, expect=1)
        assert match.xaddrs == [device.url()]
        assert match.endpoint == device.endpoint
        assert "onvif://www.onvif.org/name/gate%20cam" in match.scopes


async def test_probes_it_does_not_match_get_no_answer(device: SimOnvifDevice) -> None:
    assert device.discovery is not None
    address = ("127.0.0.1", device.discovery.port)
    # Half a second of silence: the device answers a matching probe in milliseconds.
    assert await asyncio.to_thread(probe, address, types="dn:SomethingElse",
                                   listen_s=0.5) == []
    assert await asyncio.to_thread(probe, address, scopes="onvif://www.onvif.org/type/audio",
                                   listen_s=0.5) == []
    [match] = await asyncio.to_thread(probe, address,
                                      scopes="onvif://www.onvif.org/type/ptz", expect=1)
    assert match.xaddrs == [device.url()]
    assert device.discovery.probes_answered == 1


async def test_a_multicast_probe_on_loopback_finds_the_device(device: SimOnvifDevice) -> None:
    assert device.discovery is not None
    [match] = await asyncio.to_thread(probe, (GROUP, device.discovery.port),
                                      multicast_interface="127.0.0.1", expect=1)
    assert match.xaddrs == [device.url()]
