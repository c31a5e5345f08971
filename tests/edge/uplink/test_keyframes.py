"""A viewer's PLI reaches the camera as a keyframe request, once per stream and moment."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from edge.bench.whep_viewer import WhepViewer
from edge.bus.client import BusClient
from edge.bus.endpoints import Endpoints
from tests.support import eventually
from tests.support.uplink import SMALL, TOKEN, vehicle

pytestmark = pytest.mark.timeout(90)

# A GOP longer than the test: recovery could only come from a keyframe we asked for.
LONG_GOP: dict[str, Any] = {**SMALL, "gop": 300, "loop_seconds": 10.0}


async def send_pli(viewer: WhepViewer) -> None:
    receiver = viewer.pc.getTransceivers()[0].receiver
    sources = receiver.getSynchronizationSources()
    assert sources, "no RTP from the uplink yet"
    # What aiortc's receiver sends when its decoder fails: a real RTCP PLI on the wire.
    await receiver._send_rtcp_pli(sources[0].source)


async def test_a_viewers_picture_loss_asks_the_camera_for_a_keyframe(
        tmp_path: Path, endpoints: Endpoints, bus: BusClient) -> None:
    async with vehicle(tmp_path, endpoints, bus, {"gate": LONG_GOP}) as v:
        await v.wait_live("gate")
        viewer = WhepViewer(v.whep("gate"), TOKEN, http=v.http)
        await viewer.start()
        try:
            await viewer.wait_frames(10, timeout=30)
            camera = v.cameras["gate"]
            assert camera.keyframes_requested == {}
            await send_pli(viewer)
            await send_pli(viewer)  # the same loss, asked twice: one request
            outcomes = v.uplink.manager.keyframes.outcomes
            await eventually(lambda: outcomes["accepted"] == 1, what="the camera service's yes")
            assert camera.keyframes_requested == {"main": 1}
            assert outcomes["coalesced"] == 1
            session = v.uplink.manager.to_json()[0]
            assert session["keyframes_wanted"] == 2
        finally:
            await viewer.close()
