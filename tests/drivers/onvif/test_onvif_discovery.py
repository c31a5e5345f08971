"""WS-Discovery: our Probe against the simulated camera's responder, over real UDP.

The responder (drivers/sim/onvif/discovery.py) listens on a private port on
loopback; the probe reaches it sent straight to that port, and by multicast
to the group on that port out of the loopback interface. Malformed and
foreign answers come from a raw UDP socket in the test.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from drivers.onvif.discovery import (
    Device,
    DiscoveryError,
    discover,
    parse_probe_matches,
    probe_message,
)
from drivers.sim.onvif.discovery import DiscoveryResponder, probe_matches_xml

pytestmark = pytest.mark.timeout(60)

SCOPES = ["onvif://www.onvif.org/type/video_encoder",
          "onvif://www.onvif.org/name/Gate%20camera",
          "onvif://www.onvif.org/hardware/SimCam-1",
          "onvif://www.onvif.org/location/vehicle"]
Responders = Callable[..., Awaitable[DiscoveryResponder]]


@pytest.fixture
async def responder() -> AsyncIterator[Responders]:
    started: list[DiscoveryResponder] = []

    async def make(endpoint: str = "urn:uuid:0b5a6d8e-1c1f-4c61-9d35-3c1c7b7e0001",
                   xaddr: str = "http://127.0.0.1:8080/onvif/device_service",
                   scopes: list[str] = SCOPES) -> DiscoveryResponder:
        r = DiscoveryResponder(endpoint, [xaddr], scopes, port=0, interface="127.0.0.1")
        await r.start()
        started.append(r)
        return r

    yield make
    for r in started:
        r.close()


async def test_probe_sent_to_the_device_finds_it_once(responder: Responders) -> None:
    r = await responder()
    devices = await discover(1.0, [("127.0.0.1", r.port)])
    assert devices == [Device(
        address="127.0.0.1", endpoint=r.endpoint,
        xaddrs=("http://127.0.0.1:8080/onvif/device_service",), scopes=tuple(SCOPES),
        types=("dn:NetworkVideoTransmitter", "tds:Device"))]
    assert (devices[0].name, devices[0].hardware) == ("Gate camera", "SimCam-1")
    # The probe goes out twice (UDP may lose one); the device is listed once all the same.
    assert r.probes_answered == 2


async def test_multicast_probe_finds_every_device_in_the_group(responder: Responders) -> None:
    a = await responder()
    b = await responder(endpoint="urn:uuid:0b5a6d8e-1c1f-4c61-9d35-3c1c7b7e0002",
                        xaddr="http://127.0.0.1:8081/onvif/device_service")
    try:
        found = await discover(1.0, [("239.255.255.250", a.port), ("239.255.255.250", b.port)],
                               interface="127.0.0.1")
    except DiscoveryError as e:
        pytest.skip(f"no multicast on loopback here: {e}")
    assert {d.endpoint for d in found} == {a.endpoint, b.endpoint}


async def test_nothing_answering_is_an_empty_list() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as quiet:
        quiet.bind(("127.0.0.1", 0))  # receives the probe, answers nothing
        assert await discover(0.5, [quiet.getsockname()]) == []


async def test_foreign_and_malformed_answers_are_ignored() -> None:
    """A peer that answers the probe with junk, another probe's matches, then a good match."""
    loop = asyncio.get_running_loop()
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.bind(("127.0.0.1", 0))
    peer.setblocking(False)
    good = "urn:uuid:0b5a6d8e-1c1f-4c61-9d35-3c1c7b7e00aa"

    async def answer() -> None:
        data, addr = await loop.sock_recvfrom(peer, 65535)
        message_id = data.split(b"<a:MessageID>")[1].split(b"<")[0].decode()
        for junk in (b"\x00\xff not xml", b"<a><b></a>",
                     b'<!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]><x>&b;</x>',
                     probe_matches_xml("urn:uuid:someone-else", "urn:uuid:other",
                                       ["http://192.0.2.9/onvif/device_service"], SCOPES),
                     probe_matches_xml(message_id, "urn:uuid:no-xaddr", ["ftp://x"], SCOPES),
                     probe_matches_xml(message_id, good,
                                       ["http://192.0.2.7/onvif/device_service"], [])):
            await loop.sock_sendto(peer, junk, addr)

    task = asyncio.create_task(answer())
    try:
        found = await discover(1.0, [peer.getsockname()])
        await task
    finally:
        peer.close()
    assert [(d.endpoint, d.xaddrs, d.name) for d in found] == [
        (good, ("http://192.0.2.7/onvif/device_service",), None)]


def test_probe_is_what_the_responder_accepts() -> None:
    from drivers.sim.onvif.discovery import probe_matches

    assert probe_matches(probe_message("urn:uuid:1"), SCOPES) == "urn:uuid:1"


def test_unparseable_matches_are_nothing() -> None:
    assert parse_probe_matches(b"", "127.0.0.1", None) == []
    assert parse_probe_matches(b"<x/>", "127.0.0.1", None) == []


async def test_bad_interface_is_one_line() -> None:
    with pytest.raises(DiscoveryError, match="interface not-an-ip: expected an IPv4 address"):
        await discover(0.1, interface="not-an-ip")
