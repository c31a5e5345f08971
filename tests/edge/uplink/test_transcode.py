"""An H.265 camera reaches the centre as H.264: its sub stream, transcoded, shared, limited."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.bench.whep_viewer import WhepRefused, WhepViewer
from edge.bus import topics
from edge.bus.client import BusClient
from edge.bus.endpoints import Endpoints
from edge.bus.messages import CameraStatus, CameraStream
from tests.support.uplink import TOKEN, vehicle

pytestmark = pytest.mark.timeout(90)

H265 = {"codec": "h265", "main": (640, 360), "sub": (448, 256), "loop_seconds": 2.0,
        "sub_bitrate": 300_000}


async def test_h265_sub_stream_is_transcoded_to_h264(
        tmp_path: Path, endpoints: Endpoints, bus: BusClient) -> None:
    async with vehicle(tmp_path, endpoints, bus, {"furnace": H265},
                       uplink={"max_transcodes": 1}) as v:
        await v.wait_live("furnace")
        first = WhepViewer(v.whep("furnace", "?profile=main"), TOKEN, http=v.http)
        await first.start()
        # Whatever was asked, an H.265 camera sends its sub stream as H.264.
        assert first.response_headers["X-Edge-Stream"] == "furnace/sub@h264"
        assert "H264/90000" in first.answer and "profile-level-id=42c0" in first.answer
        await first.wait_frames(30, timeout=15)
        assert (first.stats.width, first.stats.height) == (448, 256)
        second = WhepViewer(v.whep("furnace"), TOKEN, http=v.http)
        await second.start()
        await second.wait_frames(10, timeout=10)
        assert len(v.uplink.manager.streams.transcoders) == 1  # shared, not one per viewer

        # Another H.265 camera while the only transcoder is busy: refused, with the reason.
        v.bus.publish(topics.cam_stream("ghost", "main"), CameraStream(
            camera_id="ghost", profile="main", codec="h265", endpoint="ipc:///nowhere"))
        v.bus.publish(topics.cam_status("ghost"), CameraStatus(camera_id="ghost", state="live",
                                                               codec="h265"))
        await v.wait_live("ghost")
        refused = WhepViewer(v.whep("ghost"), TOKEN, http=v.http)
        with pytest.raises(WhepRefused) as e:
            await refused.start()
        assert e.value.status == 503
        assert "all 1 allowed (uplink.max_transcodes) are busy" in e.value.text
        await refused.close()

        await first.close()
        await second.close()
        assert not v.uplink.manager.streams.transcoders and not v.uplink.manager.streams.fanouts
