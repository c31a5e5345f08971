"""A keyframe on request: SET_PARAMETER Renew-Stream to the simulated camera, with its auth.

GStreamer's RTSP server, which does not renew streams, is in test_gstreamer_interop.py.
"""

from __future__ import annotations

import pytest

from drivers.rtsp.renew_stream import RenewFailed, renew_stream
from tests.support.rtsp import CameraFactory, IngestFactory, take

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(90)]

# A GOP far longer than the test: any keyframe after the first is one we asked for.
LONG_GOP = 300
SMALL = (640, 360)


@pytest.mark.parametrize("live", [False, True], ids=["loop", "live"])
async def test_a_renewed_stream_sends_a_keyframe_at_once(
    sim_camera: CameraFactory, ingest_factory: IngestFactory, live: bool
) -> None:
    camera = await sim_camera(main=SMALL, sub=None, gop=LONG_GOP, loop_seconds=10.0,
                              live=live, user="op", password="s3cret")
    url = camera.url(with_credentials=True)
    ingest = await ingest_factory(url)
    first = await take(ingest, 5, within=30)
    assert first[0].keyframe and not any(au.keyframe for au in first[1:])

    assert await ingest.request_keyframe() is None
    assert camera.keyframes_requested == {"main": 1}
    # Units already on their way arrive first; a GOP is 300 units, so a keyframe
    # within a handful is the one we asked for.
    after = await take(ingest, 15, within=10)
    assert any(au.keyframe for au in after), [au.keyframe for au in after]


async def test_wrong_credentials_are_named_and_nothing_is_renewed(
        sim_camera: CameraFactory) -> None:
    camera = await sim_camera(main=SMALL, sub=None, user="op", password="s3cret")
    wrong = camera.url().replace("rtsp://", "rtsp://op:nope@")
    with pytest.raises(RenewFailed, match="refused our credentials"):
        await renew_stream(wrong)
    with pytest.raises(RenewFailed, match="wants credentials"):
        await renew_stream(camera.url())
    assert camera.keyframes_requested == {}


async def test_an_unknown_stream_and_a_dead_camera_are_clear_errors(
        sim_camera: CameraFactory) -> None:
    camera = await sim_camera(main=SMALL, sub=None)
    with pytest.raises(RenewFailed, match="404"):
        await renew_stream(camera.url().replace("/main", "/nope"))
    await camera.close()
    with pytest.raises(RenewFailed, match="SET_PARAMETER"):
        await renew_stream(camera.url())
    with pytest.raises(RenewFailed, match="not an RTSP URL"):
        await renew_stream("http://example.org/x")
