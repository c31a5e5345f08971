"""OnvifSource: RTSP at the URI the simulated ONVIF device gives, asked again when it fails.

Real peers throughout: the simulated camera and its ONVIF device on 127.0.0.1.
A camera that "reboots onto another port" is the simulated camera closed and
started again on a new port, which its ONVIF device then hands out.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest

from drivers.onvif.source import ASKING, OnvifSource
from drivers.rtsp import RtspSource
from drivers.sim.onvif import PtzState, SimOnvifDevice
from drivers.source import AccessUnitSink, SourceState, StateCallback
from tests.support import eventually, free_port
from tests.support.onvif_client import CREDENTIALS, PASSWORD, USER, OnvifCamera, onvif_camera
from tests.support.rtsp import Units

pytestmark = pytest.mark.timeout(60)

States = list[tuple[SourceState, str]]
Make = Callable[..., tuple[OnvifSource, States]]


def rtsp(url: str, sink: AccessUnitSink, on_state: StateCallback) -> RtspSource:
    return RtspSource(url, name="cam/main", sink=sink, on_state=on_state)


@pytest.fixture
async def make() -> AsyncIterator[Make]:
    """Factory: an OnvifSource (stopped after the test) and the states it reports."""
    sources: list[OnvifSource] = []

    def build(address: str, credentials: str | None = CREDENTIALS, profile: str = "main", *,
              sink: AccessUnitSink | None = None, stale_after: float = 15.0,
              retry: tuple[float, float] = (1.0, 30.0)) -> tuple[OnvifSource, States]:
        states: States = []
        source = OnvifSource(address, credentials, profile, rtsp, name="cam/main",
                             sink=sink or Units(), on_state=lambda s, r: states.append((s, r)),
                             stale_after=stale_after, retry=retry)
        sources.append(source)
        return source, states

    yield build
    for source in sources:
        await source.stop()


def live(source: OnvifSource) -> bool:
    return source.stats.state is SourceState.LIVE


async def test_goes_live_on_the_profile_it_names(make: Make) -> None:
    async with onvif_camera() as cam:
        units = Units()
        source, states = make(cam.address, profile="sub", sink=units)
        await source.start()
        assert (await units.take(1, within=20))[0].keyframe
        await eventually(lambda: live(source), within=10, what="the source to be live")
        info = source.stream_info
        assert info is not None and (info.width, info.height) == (640, 360)
        assert source.resolutions == 1
        assert states[0] == (SourceState.CONNECTING, ASKING)


async def test_wrong_credentials_are_the_reason_it_is_down(make: Make) -> None:
    async with onvif_camera() as cam:
        source, states = make(cam.address, f"{USER}:wrong", retry=(0.2, 0.5))
        await source.start()
        reason = (f"ONVIF {cam.address}: GetDeviceInformation: wrong user name or password "
                  "(NotAuthorized)")
        await eventually(lambda: source.stats.state is SourceState.DOWN, within=20,
                         what="the source to be down")
        assert (source.stats.state, source.stats.reason) == (SourceState.DOWN, reason)
        assert (SourceState.DOWN, reason) in states
        # It keeps asking (with backoff), and is never live on a guess.
        await eventually(lambda: cam.device.requests.get("GetServices", 0) >= 3,
                         within=20, what="the source to ask again")
        assert not live(source) and source.resolutions == 0


async def test_a_device_that_comes_up_later_is_read(make: Make) -> None:
    port = free_port()
    source, _ = make(f"http://127.0.0.1:{port}", retry=(0.2, 0.5))
    await source.start()
    await eventually(lambda: "connection refused" in source.stats.reason, within=20,
                     what="the refusal as the reason")
    assert source.stats.state is SourceState.DOWN
    async with onvif_camera() as cam:
        # The same camera's device, now on the port the source was given.
        late = SimOnvifDevice(cam.camera, PtzState(), port=port, user=USER, password=PASSWORD)
        await late.start()
        try:
            await eventually(lambda: live(source), within=30, what="the source to be live")
        finally:
            await source.stop()
            await late.close()


async def test_asks_again_when_the_camera_moves_to_another_port(make: Make) -> None:
    async with onvif_camera() as cam:
        source, _ = make(cam.address, stale_after=1.0)
        await source.start()
        await eventually(lambda: live(source), within=20, what="the source to be live")
        old_port = cam.camera.port
        await reboot_onto_another_port(cam)
        assert cam.camera.port != old_port
        # Nothing listens on the old port: only asking the device again brings it back.
        await eventually(lambda: live(source), within=40, what="the source to be live again")
        assert source.resolutions >= 2 and cam.device.requests["GetStreamUri"] >= 2


async def reboot_onto_another_port(cam: OnvifCamera) -> None:
    await cam.camera.close()
    cam.camera.port = 0  # whatever is free: the device hands out the new URL
    await cam.camera.start()
