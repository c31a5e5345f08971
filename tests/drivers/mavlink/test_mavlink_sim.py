"""The simulator itself: several at once, ground-station chatter, request handling."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from drivers.mavlink.dialect import mavlink
from drivers.mavlink.framing import FrameParser
from drivers.sim.drone.generator import DEFAULT_RATES_HZ, chunk_statustext
from tests.support import eventually

pytestmark = pytest.mark.timeout(15)


async def test_four_drones_stream_at_once(mav: Any) -> None:
    """Four simulators in one process each stream their own telemetry to their own reader.

    What they cost is a figure for a benchmark, not a test (a loaded machine moves it).
    """
    sims = [await mav.sim(sysid=i + 1, camera_rtsp_url="rtsp://127.0.0.1/x") for i in range(4)]
    seen: list[dict[int, int]] = [{} for _ in sims]  # per reader: message id -> count

    async def drain(port: int, counts: dict[int, int], sysid: int) -> None:
        parser = FrameParser()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while data := await reader.read(65536):
                for frame in parser.feed(data):
                    assert frame.sysid == sysid, (frame.sysid, sysid)
                    counts[frame.msg_id] = counts.get(frame.msg_id, 0) + 1
        finally:
            writer.close()

    readers = [asyncio.create_task(drain(s.address[1], seen[i], i + 1))
               for i, s in enumerate(sims)]
    heartbeat = mavlink.MAVLINK_MSG_ID_HEARTBEAT
    try:
        # Functional, not a rate: every sim keeps streaming (a second HEARTBEAT, 1 Hz) and
        # sends its whole telemetry set, not one message type; 20 s only guards a hang.
        await eventually(lambda: all(c.get(heartbeat, 0) >= 2 and len(c) >= 5 for c in seen)
                         or any(r.done() for r in readers),
                         within=20, what="every sim's HEARTBEATs and telemetry")
    finally:
        for r in readers:
            r.cancel()
        results = await asyncio.gather(*readers, return_exceptions=True)
    for result in results:  # a reader that failed (a frame of another sysid) fails the test
        assert result is None or isinstance(result, asyncio.CancelledError), result


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
