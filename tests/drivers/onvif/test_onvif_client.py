"""OnvifClient (onvif-zeep-async underneath) against the simulated ONVIF camera.

The device is drivers/sim/onvif: real SOAP over HTTP with WS-UsernameToken on
127.0.0.1, steering the picture the simulated camera streams over RTSP. A PTZ
command is seen to act twice: in the device's PTZ state and, decoded, in the
picture (the ruler's white block moves on a pan and widens on a zoom).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from drivers.onvif import WRONG_CREDENTIALS, OnvifClient, OnvifError, Range
from drivers.rtsp import RtspSource
from drivers.rtsp.probe import probe
from tests.support import eventually
from tests.support.onvif_client import CREDENTIALS, SUB, USER, OnvifCamera, Pictures, onvif_camera

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def cam() -> AsyncIterator[OnvifCamera]:
    async with onvif_camera() as c:
        yield c


@pytest.fixture
async def client(cam: OnvifCamera) -> AsyncIterator[OnvifClient]:
    async with OnvifClient(cam.address, CREDENTIALS) as c:
        yield c


@pytest.fixture
async def pictures(cam: OnvifCamera, client: OnvifClient) -> AsyncIterator[Pictures]:
    """The sub stream, at the URI the device gives, decoded (640 wide: cheap to decode)."""
    _, uri = await client.resolve("sub")
    sink = Pictures()
    source = RtspSource(uri, name="cam/sub", sink=sink)
    await source.start()
    try:
        await eventually(lambda: sink.marker_x() is not None, within=20,
                         what="a decoded picture showing the ruler")
        yield sink
    finally:
        await source.stop()


async def test_profiles_and_stream_uris(cam: OnvifCamera, client: OnvifClient) -> None:
    info = await client.device_info()
    assert (info.manufacturer, info.model, info.serial) == ("edge", "sim-camera", "cam")
    profiles = {p.token: p for p in await client.profiles()}
    assert {t: (p.encoding, p.width, p.height) for t, p in profiles.items()} == {
        "main": ("H264", 1280, 720), "sub": ("H264", *SUB)}
    main_profile, main_uri = await client.resolve("main")
    sub_profile, sub_uri = await client.resolve("sub")
    assert (main_profile.token, main_uri) == ("main", cam.camera.url("main"))
    assert (sub_profile.token, sub_uri) == ("sub", cam.camera.url("sub"))
    assert (await client.resolve("sub"))[1] == (await client.resolve(sub_profile.token))[1]
    # The URI is the stream itself, not merely a string the device made up.
    seen = await probe(main_uri, 1.0)
    assert (seen.codec, seen.width, seen.height) == ("h264", 1280, 720)


async def test_ptz_capabilities_as_the_device_states_them(client: OnvifClient) -> None:
    main = next(p for p in await client.profiles() if p.token == "main")
    caps = await client.ptz_capabilities(main)
    assert caps.home_supported and caps.max_presets == 32
    assert caps.continuous_pan_tilt is not None and caps.continuous_zoom is not None
    assert caps.continuous_pan_tilt.uri.endswith("/PanTiltSpaces/VelocityGenericSpace")
    assert caps.continuous_pan_tilt.x == caps.continuous_pan_tilt.y == Range(-1.0, 1.0)
    assert caps.continuous_zoom.x == Range(-1.0, 1.0)
    assert caps.relative_zoom is not None and caps.relative_zoom.x == Range(-1.0, 1.0)
    assert caps.absolute_zoom is not None and caps.absolute_zoom.x == Range(0.0, 1.0)
    assert (caps.pan_limits, caps.zoom_limits) == (Range(-1.0, 1.0), Range(0.0, 1.0))


async def test_continuous_pan_moves_the_picture_and_stop_holds_it(
        cam: OnvifCamera, client: OnvifClient, pictures: Pictures) -> None:
    home = pictures.marker_x()
    assert home is not None and abs(home - SUB[0] / 2) < 8
    await client.continuous_move("main", pan=1.0)
    # Panning right turns the camera right: the world, and the ruler's block, move left.
    await eventually(lambda: (x := pictures.marker_x()) is not None and x < home - SUB[0] / 8,
                     within=20, what="the picture to pan")
    assert cam.ptz.moving() == (True, False)
    await client.stop("main")
    assert cam.ptz.moving() == (False, False)
    pan, tilt, zoom = await client.ptz_position("main")
    assert pan is not None and pan > 0 and (tilt, zoom) == (0.0, 0.0)
    assert cam.device.requests["ContinuousMove"] == cam.device.requests["Stop"] == 1


async def test_relative_zoom_magnifies_and_home_returns(
        cam: OnvifCamera, client: OnvifClient, pictures: Pictures) -> None:
    width = pictures.marker_width()
    assert width is not None
    # 0.2 of the zoom range is 1.6x: enough to see, little enough to keep the ruler in view.
    await client.relative_zoom("main", 0.2)
    await eventually(lambda: (w := pictures.marker_width()) is not None and w > 1.4 * width,
                     within=20, what="the picture to zoom in")
    assert cam.ptz.position().zoom == pytest.approx(0.2)
    await client.goto_home("main")
    await eventually(lambda: (w := pictures.marker_width()) is not None and w < 1.3 * width,
                     within=20, what="the picture to zoom back out at home")
    assert cam.ptz.position() == type(cam.ptz.position())()


async def test_presets_set_listed_and_gone_to(cam: OnvifCamera, client: OnvifClient) -> None:
    await client.relative_zoom("main", 0.25)
    token = await client.set_preset("main", "gate")
    assert [(p.token, p.name) for p in await client.presets("main")] == [(token, "gate")]
    await client.goto_home("main")
    assert cam.ptz.position().zoom == 0.0
    await client.goto_preset("main", token)
    assert cam.ptz.position().zoom == pytest.approx(0.25)
    with pytest.raises(OnvifError, match=r"GotoPreset: SOAP fault NoToken"):
        await client.goto_preset("main", "no-such-preset")


@pytest.mark.parametrize("credentials", [f"{USER}:wrong", "intruder:s3cret-pw", f"{USER}:"])
async def test_wrong_credentials_is_one_clear_line(cam: OnvifCamera, credentials: str) -> None:
    with pytest.raises(OnvifError) as caught:
        async with OnvifClient(cam.address, credentials):
            pass
    text = str(caught.value)
    assert text == (f"ONVIF {cam.address}: GetDeviceInformation: "
                    f"{WRONG_CREDENTIALS} (NotAuthorized)"), text


async def test_no_credentials_says_they_are_needed(cam: OnvifCamera) -> None:
    with pytest.raises(OnvifError) as caught:
        async with OnvifClient(cam.address, None):
            pass
    assert str(caught.value) == (
        f"ONVIF {cam.address}: GetDeviceInformation: the device needs a user name and "
        "password (give the camera's `credentials`) (NotAuthorized)")


async def test_an_unknown_profile_token_names_the_ones_there_are(client: OnvifClient) -> None:
    with pytest.raises(OnvifError,
                       match=r'no profile with token "hd" \(the device has: main, sub\)'):
        await client.resolve("hd")
