"""The simulator itself: cost, ground-station chatter, request handling."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from drivers.mavlink.dialect import mavlink
from drivers.sim.drone.generator import DEFAULT_RATES_HZ, chunk_statustext

pytestmark = pytest.mark.timeout(15)


async def test_four_drones_at_full_rate_are_cheap(mav: Any) -> None:
    sims = [await mav.sim(sysid=i + 1, camera_rtsp_url="rtsp://127.0.0.1/x") for i in range(4)]
    received = [0]

    async def drain(port: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while data := await reader.read(65536):
                received[0] += len(data)
        finally:
            writer.close()

    readers = [asyncio.create_task(drain(s.address[1])) for s in sims]
    try:
        await asyncio.sleep(0.3)
        cpu0, wall0, bytes0 = time.process_time(), time.monotonic(), received[0]
        await asyncio.sleep(2.0)
        cpu = (time.process_time() - cpu0) / (time.monotonic() - wall0)
        rate = (received[0] - bytes0) / (time.monotonic() - wall0)
    finally:
        for r in readers:
            r.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
    # every stream at its default rate: about 30 messages/s and 1 kB/s each
    assert rate > 4 * 800
    # the budget is 10 % of a core for all four; this includes the readers
    assert cpu < 0.05, f"4 sims used {cpu:.1%} of a core"


async def test_ground_station_chatter_is_answered(mav: Any) -> None:
    sim, link = await mav.pair()
    enc = link.connection.encoder
    got: dict[str, list[Any]] = {"PARAM_VALUE": [], "MISSION_COUNT": [], "AUTOPILOT_VERSION": []}

    def spy(frame, peer) -> None:  # type: ignore[no-untyped-def]
        if frame.msg is not None and frame.name in got:
            got[frame.name].append(frame.msg)

    link.connection.add_listener(spy)
    link.connection.send(enc.param_request_list_encode(1, 1))
    link.connection.send(enc.mission_request_list_encode(1, 1, 0))
    link.connection.send(
        enc.command_long_encode(1, 1, mavlink.MAV_CMD_REQUEST_MESSAGE, 0, 148, 0, 0, 0, 0, 0, 0)
    )
    await mav.wait_until(lambda: all(got.values()))
    assert got["PARAM_VALUE"][0].param_count == len(sim.autopilot.params)
    assert got["MISSION_COUNT"][0].count == 0
    assert got["AUTOPILOT_VERSION"][0].flight_sw_version >> 24 == 4


async def test_message_interval_stop_and_default(mav: Any) -> None:
    sim, link = await mav.pair()
    gen = sim.generator
    vfr = mavlink.MAVLINK_MSG_ID_VFR_HUD
    assert gen.set_interval(vfr, -1) and gen.interval_s(vfr) is None
    assert gen.set_interval(vfr, 0) and gen.interval_s(vfr) == pytest.approx(
        1 / DEFAULT_RATES_HZ[vfr]
    )
    assert gen.set_interval(vfr, 50_000) and gen.interval_s(vfr) == pytest.approx(0.05)
    assert not gen.set_interval(12345, 1000)


def test_statustext_chunking() -> None:
    assert chunk_statustext("short", 7) == [(b"short", 0, 0)]
    parts = chunk_statustext("x" * 120, 7)
    assert [(len(t), i, s) for t, i, s in parts] == [(50, 7, 0), (50, 7, 1), (20, 7, 2)]
    # exactly 100 characters: an empty last chunk says "that was all"
    assert [len(t) for t, _, _ in chunk_statustext("y" * 100, 1)] == [50, 50, 0]
