"""Camera stream discovery and the read-only probe."""

from __future__ import annotations

import json
from typing import Any

import pytest

from drivers.mavlink.dialect import mavlink
from drivers.mavlink.framing import Frame
from drivers.mavlink.probe import probe

pytestmark = pytest.mark.timeout(15)

URL = "rtsp://192.168.144.25:8554/main.264"


async def test_video_uri_discovery(mav: Any) -> None:
    sim = await mav.sim(camera_rtsp_url=URL)
    link = await mav.link(mav.tcp_of(sim))
    streams = await mav.wait_until(lambda: link.video_streams)
    s = streams[0]
    assert (s.sysid, s.compid, s.stream_id) == (1, 100, 1)
    assert s.uri == URL and s.encoding == "H264" and s.stream_type == "RTSP"
    assert s.resolution == (1920, 1080) and s.framerate == 25.0
    assert s.camera == "EdgeSim GimbalCam 1080"
    # the camera component is not mistaken for a vehicle
    assert list(link.vehicles) == [1] and link.vehicles[1].autopilot_compid == 1


async def test_probe_reports_vehicles_and_only_asks_for_rates(mav: Any) -> None:
    sim = await mav.sim(camera_rtsp_url=URL)
    commands: list[int] = []

    def spy(frame: Frame, peer: object) -> None:
        if frame.msg_id in (
            mavlink.MAVLINK_MSG_ID_COMMAND_LONG,
            mavlink.MAVLINK_MSG_ID_COMMAND_INT,
        ):
            commands.append(frame.msg.command)
        elif frame.msg_id != mavlink.MAVLINK_MSG_ID_HEARTBEAT:
            commands.append(-frame.msg_id)

    sim.conn.add_listener(spy)
    summaries = await probe(mav.tcp_of(sim), 1.5)
    assert len(summaries) == 1
    d = summaries[0].to_dict()
    assert set(d) == {
        "sysid",
        "autopilot",
        "type",
        "mode",
        "armed",
        "lat",
        "lon",
        "alt_rel_m",
        "battery_pct",
        "msgs_per_s",
    }
    assert d["sysid"] == 1 and d["autopilot"] == "ARDUPILOTMEGA" and d["type"] == "QUADROTOR"
    assert d["mode"] == "GUIDED" and d["armed"] is True
    assert abs(d["lat"] - mav.HOME[0]) < 0.01 and 45 < d["alt_rel_m"] < 55
    # msgs_per_s is reported (the vehicle streams); its size is a rate, not checked here
    assert d["battery_pct"] > 90 and d["msgs_per_s"] > 0
    json.dumps(d)
    assert commands and set(commands) == {mavlink.MAV_CMD_SET_MESSAGE_INTERVAL}
