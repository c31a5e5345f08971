"""`probe()`, the one-shot camera check behind `edge camera probe URL`."""

from __future__ import annotations

import pytest

from drivers.rtsp import ProbeError, probe
from tests.support import free_port
from tests.support.rtsp import CameraFactory

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(30)]


async def test_probe_reports_stream_parameters(sim_camera: CameraFactory) -> None:
    camera = await sim_camera()
    # Long enough for two keyframes (a 1 s GOP) even when a loaded machine reads late.
    result = await probe(camera.url(), 2.5, "tcp")
    assert (result.codec, result.profile, result.level) == ("h264", "Constrained Baseline", "3.1")
    assert (result.width, result.height) == (1280, 720)
    assert result.fps is not None and abs(result.fps - 30) < 1
    assert result.gop == 30
    assert 1000 < result.kbps < 4000
    assert 0 < result.first_keyframe_ms < 2000
    assert result.profile_level_id == "42c01f"
    sub = await probe(camera.url("sub"), 0.5, "udp")
    assert (sub.width, sub.height, sub.transport) == (640, 360, "udp")
    assert sub.kbps < result.kbps


async def test_probe_failures_are_one_line(sim_camera: CameraFactory) -> None:
    with pytest.raises(ProbeError) as refused:
        await probe(f"rtsp://127.0.0.1:{free_port()}/cam/main", 3.0)
    assert str(refused.value) == "connection refused"

    camera = await sim_camera()
    with pytest.raises(ProbeError, match=r"^404 not found"):
        await probe(camera.url().replace("/main", "/third"), 1.0)
    with pytest.raises(ProbeError, match="^not an rtsp:// URL"):
        await probe("http://127.0.0.1/cam", 1.0)
    for error in (refused.value,):
        assert "\n" not in str(error)
