"""The centre page's HTTP side with a real client: the token on everything but the page,
server-sent events carrying the state and its changes, roll-call refusals in one line.
No NATS answers here (its port is closed): the page serves regardless and says why."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from edge.bus import topics
from edge.bus.messages import Alert, CameraStatus
from edge.centre.page import CentrePage, VehicleUplink
from edge.config import ConfigError
from tests.support import free_port
from tests.support.centre_page import AUTH, PAGE_TOKEN, bridged

NS = 1_000_000_000


@pytest.fixture
async def page() -> AsyncIterator[CentrePage]:
    vehicles = [VehicleUplink("north", f"http://127.0.0.1:{free_port()}", "vehicle-token"),
                VehicleUplink("south", "", "")]
    p = CentrePage(f"nats://127.0.0.1:{free_port()}", vehicles, "127.0.0.1:0",
                   PAGE_TOKEN.encode(), contact_timeout_s=5.0)
    await p.start()
    try:
        yield p
    finally:
        await p.close()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as s:
        yield s


def take(page: CentrePage, vehicle: str, topic: str, message: Any, seq: int) -> None:
    out = bridged(vehicle, topic, message, time.time_ns(), seq=seq)
    assert page.state.take(vehicle, seq, out.payload, out.headers)


async def test_everything_but_the_page_needs_the_token(
        page: CentrePage, http: aiohttp.ClientSession) -> None:
    for path in ("/", "/centre.js", "/centre.css"):
        async with http.get(page.url + path) as r:
            assert r.status == 200, path
    async with http.get(page.url + "/nothing.js") as r:
        assert r.status == 404
    asks = [("GET", "/api/state"), ("GET", "/api/events"),
            ("GET", "/api/vehicles/north/cameras/gate/thumbnail"),
            ("POST", "/whep/north/gate"), ("DELETE", "/whep/north/gate/abc")]
    for method, path in asks:
        for headers, why in (({}, "no bearer token"),
                             ({"Authorization": "Bearer wrong-token-0123456789"},
                              "wrong bearer token"),
                             ({"Authorization": f"Basic {PAGE_TOKEN}"}, "wrong bearer token")):
            async with http.request(method, page.url + path, headers=headers) as r:
                text = await r.text()
                assert r.status == 401, (method, path)
                assert text.startswith(why) and text.count("\n") == 1, text
                assert PAGE_TOKEN not in text
                assert r.headers["WWW-Authenticate"].startswith("Bearer")


async def test_events_send_the_state_then_each_change(
        page: CentrePage, http: aiohttp.ClientSession) -> None:
    async with http.get(page.url + "/api/events", headers=AUTH) as r:
        assert r.status == 200
        assert r.headers["Content-Type"] == "text/event-stream"

        async def event() -> tuple[str, dict[str, Any]]:
            kind, data = "", ""
            while True:
                line = (await r.content.readline()).decode().rstrip("\n")
                if line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: "):
                    data += line[6:]
                elif not line and kind:
                    return kind, json.loads(data)

        kind, state = await asyncio.wait_for(event(), 10)
        assert kind == "state"
        assert [v["id"] for v in state["vehicles"]] == ["north", "south"]
        assert [v["uplink"] for v in state["vehicles"]] == [True, False]
        assert state["rules"]["contact_s"] == 5.0 and state["timeline"] == []
        assert abs(state["now_ms"] / 1000 - time.time()) < 60  # the server's clock, in ms

        take(page, "south", topics.cam_status("mast"),
             CameraStatus(camera_id="mast", name="Mast", state="live"), 1)
        take(page, "north", topics.alert("gate"),
             Alert(severity="critical", text="smoke at the gate"), 2)
        got: dict[str, dict[str, Any]] = {}
        while "timeline" not in got or "vehicle" not in got:
            kind, value = await asyncio.wait_for(event(), 10)
            if kind == "vehicle" and value["id"] == "south":
                got[kind] = value
            elif kind == "timeline":
                got[kind] = value
        assert got["vehicle"]["contact"] == "in"
        assert [(c["id"], c["name"], c["state"]) for c in got["vehicle"]["cameras"]] == [
            ("mast", "Mast", "live")]
        (entry,) = got["timeline"]["entries"]
        assert (entry["vehicle"], entry["kind"], entry["severity"], entry["text"]) == (
            "north", "alert", "critical", "smoke at the gate")

    async with http.get(page.url + "/api/state", headers=AUTH) as r:
        snapshot = await r.json()
    assert [e["text"] for e in snapshot["timeline"]] == ["smoke at the gate"]


async def test_a_page_without_nats_serves_and_says_why(
        page: CentrePage, http: aiohttp.ClientSession) -> None:
    async def problems() -> list[str]:
        async with http.get(page.url + "/api/state", headers=AUTH) as r:
            return [v["problem"] for v in (await r.json())["vehicles"]]

    async def told() -> bool:
        return all("centre NATS" in p for p in await problems())

    deadline = asyncio.get_running_loop().time() + 30  # a refused connect is quick
    while not await told():
        assert asyncio.get_running_loop().time() < deadline, await problems()
        await asyncio.sleep(0.2)
    assert all("\n" not in p and "Traceback" not in p for p in await problems())


async def test_roll_call_refusals_are_one_line(
        page: CentrePage, http: aiohttp.ClientSession) -> None:
    sdp = {**AUTH, "Content-Type": "application/sdp"}
    cases = [
        ("/whep/nowhere/gate", sdp, 404, "no vehicle 'nowhere' on this page"),
        ("/whep/south/mast", sdp, 404, "no uplink configured for vehicle south"),
        ("/whep/north/gate", {**AUTH, "Content-Type": "text/plain"}, 415,
         "the offer must be sent as Content-Type: application/sdp"),
        # north's uplink is a closed port: the centre says so, it does not fail.
        ("/whep/north/gate", sdp, 502, "vehicle north's uplink is unreachable"),
    ]
    for path, headers, status, start in cases:
        async with http.post(page.url + path, data="v=0\r\n", headers=headers) as r:
            text = await r.text()
            assert r.status == status, (path, text)
            assert text.startswith(start) and text.count("\n") == 1, text
            assert "Traceback" not in text and "vehicle-token" not in text
    async with http.get(page.url + "/api/vehicles/north/cameras/gate/thumbnail",
                        headers=AUTH) as r:
        assert r.status == 502 and "unreachable" in await r.text()
    async with http.patch(page.url + "/whep/north/gate/abc", headers=AUTH) as r:
        assert r.status == 405
    async with http.options(page.url + "/whep/north/gate") as r:
        assert r.status == 204 and r.headers["Accept-Post"] == "application/sdp"


async def test_a_short_token_or_a_taken_port_is_one_line() -> None:
    with pytest.raises(ConfigError, match="shorter than 16 characters"):
        CentrePage("nats://127.0.0.1:1", [], "127.0.0.1:0", b"short")
    first = CentrePage(f"nats://127.0.0.1:{free_port()}", [], "127.0.0.1:0",
                       PAGE_TOKEN.encode())
    url = await first.start()
    try:
        port = url.rpartition(":")[2]
        second = CentrePage("nats://127.0.0.1:1", [], f"127.0.0.1:{port}",
                            PAGE_TOKEN.encode())
        with pytest.raises(ConfigError) as e:
            await second.start()
        assert str(e.value) == (f"page.listen: cannot listen on 127.0.0.1:{port}: "
                                "Address already in use")
    finally:
        await first.close()
