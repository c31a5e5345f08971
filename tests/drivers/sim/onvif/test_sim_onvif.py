"""The simulated camera's ONVIF device against onvif-zeep-async (the client Home Assistant
uses), over real HTTP: profiles and stream URIs that play, PTZ moves seen in the decoded
picture, presets and home, faults with ONVIF subcodes, WS-Security, WS-Discovery."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
import zeep.exceptions
from onvif import ONVIFCamera, ONVIFService

from drivers.sim.camera import SimCamera
from drivers.sim.camera.viewport import marker_span, marker_x
from drivers.sim.onvif import PtzState, SimOnvifDevice
from drivers.sim.onvif.device_service import parse_duration
from drivers.sim.onvif.soap import SoapFault
from tests.support import eventually, standing_still
from tests.support.onvif_sim import PictureWatcher, watching

USER, PASSWORD = "admin", "s3cret"
MAIN, SUB = (320, 180), (256, 144)
# Small, short loops: the start-up encode of the two home views stays a fraction of a second.
CAMERA = {"main": MAIN, "sub": SUB, "fps": 15, "gop": 15, "loop_seconds": 1.0}


@dataclass
class Sim:
    camera: SimCamera
    device: SimOnvifDevice
    client: ONVIFCamera

    async def media(self) -> ONVIFService:
        return await self.client.create_media_service()

    async def ptz(self) -> ONVIFService:
        return await self.client.create_ptz_service()

    async def stream_uri(self, profile: str) -> str:
        media = await self.media()
        reply = await media.GetStreamUri({"ProfileToken": profile, "StreamSetup": {
            "Stream": "RTP-Unicast", "Transport": {"Protocol": "RTSP"}}})
        return str(reply.Uri)

    async def playable_uri(self, profile: str) -> str:
        """The profile's stream URI with the credentials a client adds to it."""
        uri = await self.stream_uri(profile)
        return uri.replace("rtsp://", f"rtsp://{USER}:{PASSWORD}@", 1)


@pytest.fixture
async def sim() -> AsyncIterator[Sim]:
    ptz = PtzState()
    camera = SimCamera("cam1", view=ptz.view, user=USER, password=PASSWORD,
                       **CAMERA)  # type: ignore[arg-type]
    device = SimOnvifDevice(camera, ptz, user=USER, password=PASSWORD)
    async with camera, device:
        client = ONVIFCamera("127.0.0.1", device.port, USER, PASSWORD)
        await client.update_xaddrs()
        try:
            yield Sim(camera, device, client)
        finally:
            await client.close()


def fault_subcodes(error: zeep.exceptions.Fault) -> set[str]:
    return {code.localname for code in error.subcodes or []}


async def next_picture(watcher: PictureWatcher) -> Any:
    """A picture decoded after this call (so it shows what the camera sends now)."""
    seen = watcher.count()
    # Decoding starts within a second or two; 20 s is for a loaded machine only.
    await eventually(lambda: watcher.picture_after(seen + 2) is not None, within=20,
                     what="a newly decoded picture")
    return watcher.newest()


async def test_profiles_and_stream_uris_that_play(sim: Sim) -> None:
    info = await (await sim.client.create_devicemgmt_service()).GetDeviceInformation()
    assert (info.Manufacturer, info.Model, info.SerialNumber) == ("edge", "sim-camera", "cam1")
    profiles = await (await sim.media()).GetProfiles()
    assert [p.token for p in profiles] == ["main", "sub"]
    for profile, size in zip(profiles, (MAIN, SUB), strict=True):
        encoder = profile.VideoEncoderConfiguration
        assert (encoder.Encoding, encoder.Resolution.Width, encoder.Resolution.Height) == \
            ("H264", *size)
        assert profile.PTZConfiguration.NodeToken == "ptz_node"
        assert profile.PTZConfiguration.PanTiltLimits.Range.XRange.Max == 1.0
    for stream, size in (("main", MAIN), ("sub", SUB)):
        assert await sim.stream_uri(stream) == sim.camera.url(stream)
        async with watching(await sim.playable_uri(stream)) as watcher:
            picture = await next_picture(watcher)
        assert picture.shape[:2] == (size[1], size[0])
        # The home view: the ruler's white block in the middle.
        x = marker_x(picture)
        assert x is not None and abs(x - size[0] / 2) < size[0] / 32


async def test_ptz_capabilities_from_the_device(sim: Sim) -> None:
    ptz = await sim.ptz()
    [node] = await ptz.GetNodes()
    assert node.HomeSupported and node.MaximumNumberOfPresets == 32
    velocity = node.SupportedPTZSpaces.ContinuousPanTiltVelocitySpace[0]
    assert (velocity.XRange.Min, velocity.XRange.Max) == (-1.0, 1.0)
    assert (await ptz.GetNode({"NodeToken": "ptz_node"})).token == "ptz_node"
    [config] = await ptz.GetConfigurations()
    options = await ptz.GetConfigurationOptions({"ConfigurationToken": config.token})
    assert options.PTZTimeout.Min.total_seconds() == 1.0
    assert options.Spaces.RelativeZoomTranslationSpace[0].XRange.Max == 1.0


async def test_continuous_move_pans_the_picture_until_stop(sim: Sim) -> None:
    ptz = await sim.ptz()
    width = MAIN[0]
    async with watching(await sim.playable_uri("main")) as watcher:
        home = marker_x(await next_picture(watcher))
        assert home is not None
        await ptz.ContinuousMove({"ProfileToken": "main",
                                  "Velocity": {"PanTilt": {"x": 0.4, "y": 0.0}},
                                  "Timeout": "PT10S"})
        status = await ptz.GetStatus({"ProfileToken": "main"})
        assert status.MoveStatus.PanTilt == "MOVING"
        # Panning right moves the scene, and the ruler's mark, to the left.
        await eventually(lambda: (p := watcher.picture_after(0)) is not None
                         and (x := marker_x(p)) is not None and x < home - width / 10,
                         within=20, what="the mark to move left")
        await ptz.Stop({"ProfileToken": "main", "PanTilt": True, "Zoom": True})
        status = await ptz.GetStatus({"ProfileToken": "main"})
        assert status.MoveStatus.PanTilt == "IDLE" and status.Position.PanTilt.x > 0
        # Stopped: the picture holds still (the mark at the same place, picture after
        # picture); a few frames apart so that "still" is not "between two frames".
        await eventually(standing_still(lambda: marker_x(watcher.newest()), looks=4),
                         within=20, every=0.3, what="the picture to stand still")


async def test_continuous_move_ends_at_its_timeout(sim: Sim) -> None:
    ptz = await sim.ptz()
    await ptz.ContinuousMove({"ProfileToken": "main", "Timeout": "PT1S",
                              "Velocity": {"PanTilt": {"x": -0.2, "y": 0.1},
                                           "Zoom": {"x": 0.2}}})

    async def idle() -> bool:
        status = await ptz.GetStatus({"ProfileToken": "main"})
        return bool(status.MoveStatus.PanTilt == "IDLE" and status.MoveStatus.Zoom == "IDLE")

    # The move lasts one second; 20 s only bounds a broken device.
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while not await idle():
        assert loop.time() < deadline, "the move did not end at its timeout"
        await asyncio.sleep(0.1)
    stopped = sim.device.ptz.position()
    # One second at a fifth of full speed: a tenth of the range on each axis.
    assert stopped.pan == pytest.approx(-0.1, abs=0.01)
    assert stopped.tilt == pytest.approx(0.05, abs=0.01)
    assert stopped.zoom == pytest.approx(0.1, abs=0.01)


async def test_relative_zoom_enlarges_the_picture(sim: Sim) -> None:
    ptz = await sim.ptz()
    async with watching(await sim.playable_uri("main")) as watcher:
        home = marker_span(await next_picture(watcher))
        assert home is not None
        await ptz.RelativeMove({"ProfileToken": "main",
                                "Translation": {"Zoom": {"x": 0.1}}})  # 1x -> 1.3x
        status = await ptz.GetStatus({"ProfileToken": "main"})
        assert status.Position.Zoom.x == pytest.approx(0.1)

        def zoomed() -> bool:
            span = marker_span(watcher.newest())
            return span is not None and span[1] > home[1] * 1.15 \
                and abs(span[0] - home[0]) < MAIN[0] / 32

        await eventually(zoomed, within=20, what="the mark to grow, still centred")


async def test_presets_and_home_recall_the_picture(sim: Sim) -> None:
    ptz = await sim.ptz()
    width = MAIN[0]
    async with watching(await sim.playable_uri("main")) as watcher:
        home = marker_x(await next_picture(watcher))
        assert home is not None
        await ptz.AbsoluteMove({"ProfileToken": "main",
                                "Position": {"PanTilt": {"x": -0.3, "y": 0.0}}})
        # Panning left: the mark moves right, by 0.15 of the frame's width.
        door = await eventually(lambda: (x := marker_x(watcher.newest())
                                         ) is not None and x > home + width / 10 and x,
                                within=20, what="the mark to move right")
        token = await ptz.SetPreset({"ProfileToken": "main", "PresetName": "door"})
        [preset] = await ptz.GetPresets({"ProfileToken": "main"})
        assert (preset.token, preset.Name) == (token, "door")
        assert preset.PTZPosition.PanTilt.x == pytest.approx(-0.3)

        await ptz.GotoHomePosition({"ProfileToken": "main"})
        await eventually(lambda: abs(marker_x(watcher.newest()) - home) < 2,  # type: ignore[operator]
                         within=20, what="the mark back at home")
        await ptz.GotoPreset({"ProfileToken": "main", "PresetToken": token})
        await eventually(lambda: abs(marker_x(watcher.newest()) - door) < 2,  # type: ignore[operator]
                         within=20, what="the mark where the preset was stored")

        # A new home: GotoHomePosition now comes back here.
        await ptz.SetHomePosition({"ProfileToken": "main"})
        await ptz.AbsoluteMove({"ProfileToken": "main",
                                "Position": {"PanTilt": {"x": 0.0, "y": 0.0}}})
        await ptz.GotoHomePosition({"ProfileToken": "main"})
        status = await ptz.GetStatus({"ProfileToken": "main"})
        assert status.Position.PanTilt.x == pytest.approx(-0.3)

    await ptz.RemovePreset({"ProfileToken": "main", "PresetToken": token})
    assert await ptz.GetPresets({"ProfileToken": "main"}) == []
    with pytest.raises(zeep.exceptions.Fault) as caught:
        await ptz.GotoPreset({"ProfileToken": "main", "PresetToken": token})
    assert fault_subcodes(caught.value) == {"InvalidArgVal", "NoToken"}
    assert token in str(caught.value)


async def test_bad_arguments_and_unknown_actions_give_onvif_faults(sim: Sim) -> None:
    media, ptz = await sim.media(), await sim.ptz()
    with pytest.raises(zeep.exceptions.Fault) as caught:
        await media.GetStreamUri({"ProfileToken": "nope", "StreamSetup": {
            "Stream": "RTP-Unicast", "Transport": {"Protocol": "RTSP"}}})
    assert fault_subcodes(caught.value) == {"InvalidArgVal", "NoProfile"}
    assert str(caught.value) == "no profile 'nope' (profiles: main, sub)"
    with pytest.raises(zeep.exceptions.Fault) as caught:
        await ptz.ContinuousMove({"ProfileToken": "main",
                                  "Velocity": {"PanTilt": {"x": 3.0, "y": 0.0}}})
    assert fault_subcodes(caught.value) == {"InvalidArgVal", "InvalidVelocity"}
    assert str(caught.value) == "x=3 is outside -1..1"
    with pytest.raises(zeep.exceptions.Fault) as caught:
        await ptz.ContinuousMove({"ProfileToken": "main", "Timeout": "PT600S",
                                  "Velocity": {"PanTilt": {"x": 0.1, "y": 0.0}}})
    assert fault_subcodes(caught.value) == {"InvalidArgVal", "TimeoutNotSupported"}
    with pytest.raises(zeep.exceptions.Fault) as caught:
        await (await sim.client.create_devicemgmt_service()).GetNetworkProtocols()
    assert fault_subcodes(caught.value) == {"ActionNotSupported"}
    assert sim.device.ptz.position().pan == 0.0  # refused moves moved nothing


async def test_wrong_password_is_the_clients_auth_error(sim: Sim) -> None:
    wrong = ONVIFCamera("127.0.0.1", sim.device.port, USER, "not-the-password")
    try:
        # Pre-authentication operations (ONVIF Core's PRE_AUTH class) still answer.
        await wrong.update_xaddrs()
        devicemgmt = await wrong.create_devicemgmt_service()
        clock = await devicemgmt.authless_GetSystemDateAndTime()
        assert clock.UTCDateTime.Date.Year >= 2024
        with pytest.raises(zeep.exceptions.Fault) as caught:
            await devicemgmt.GetDeviceInformation()
        # What the user sees, and the subcode a client tells "wrong credentials" by.
        assert str(caught.value) == "Sender not Authorized"
        assert fault_subcodes(caught.value) == {"NotAuthorized"}
        with pytest.raises(zeep.exceptions.Fault) as caught:
            await (await wrong.create_media_service()).GetProfiles()
        assert fault_subcodes(caught.value) == {"NotAuthorized"}
    finally:
        await wrong.close()
    assert "GetDeviceInformation" not in sim.device.requests


async def test_password_text_tokens_are_accepted(sim: Sim) -> None:
    plain = ONVIFCamera("127.0.0.1", sim.device.port, USER, PASSWORD, encrypt=False)
    try:
        await plain.update_xaddrs()
        info = await (await plain.create_devicemgmt_service()).GetDeviceInformation()
        assert info.SerialNumber == "cam1"
    finally:
        await plain.close()


def test_durations() -> None:
    assert parse_duration("PT5S") == 5.0
    assert parse_duration("PT1M0.5S") == 60.5
    assert parse_duration("P1DT1H") == 90000.0
    for bad in ("5", "PT", "PTS", "-PT5S"):
        with pytest.raises(SoapFault, match="is not a duration"):
            parse_duration(bad)


async def test_run_does_not_break_the_plain_camera_path() -> None:
    """A camera without a PTZ view still serves the plain scene (no ruler)."""
    async with SimCamera("plain", main=(640, 360), sub=None, fps=15, gop=15,
                         loop_seconds=1.0) as camera:
        assert camera.view is None
        async with watching(camera.url("main")) as watcher:
            picture = await next_picture(watcher)
    assert marker_x(picture) is None
