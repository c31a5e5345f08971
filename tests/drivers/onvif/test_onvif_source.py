"""OnvifSource: RTSP at the URI the simulated ONVIF device gives, asked again when it fails.

Real peers throughout: the simulated camera and its ONVIF device on 127.0.0.1.
A camera that "reboots onto another port" is the simulated camera closed and
started again on a new port, which its ONVIF device then hands out. A device
that does not answer is its simulator closed: nothing listens on its port.
The URI memory is in the test's own directory, never the user's cache.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from drivers.onvif.source import ASKING, OnvifSource
from drivers.onvif.uri_memory import UriMemory
from drivers.rtsp import RtspSource
from drivers.sim.onvif import PtzState, SimOnvifDevice
from drivers.source import AccessUnitSink, SourceState, StateCallback
from tests.support import eventually, free_port
from tests.support.onvif_client import CREDENTIALS, PASSWORD, USER, OnvifCamera, onvif_camera
from tests.support.rtsp import Units

pytestmark = pytest.mark.timeout(60)

States = list[tuple[SourceState, str]]
Make = Callable[..., tuple[OnvifSource, States]]


class Rtsp:
    """The RTSP sources' factory, keeping each URL it was asked to read."""

    def __init__(self) -> None:
        self.urls: list[str] = []

    def __call__(self, url: str, sink: AccessUnitSink, on_state: StateCallback) -> RtspSource:
        self.urls.append(url)
        return RtspSource(url, name="cam/main", sink=sink, on_state=on_state)


@pytest.fixture
def rtsp() -> Rtsp:
    return Rtsp()


@pytest.fixture
async def make(rtsp: Rtsp) -> AsyncIterator[Make]:
    """Factory: an OnvifSource (stopped after the test) and the states it reports."""
    sources: list[OnvifSource] = []

    def build(address: str, credentials: str | None = CREDENTIALS, profile: str = "main", *,
              sink: AccessUnitSink | None = None, stale_after: float = 15.0,
              retry: tuple[float, float] = (1.0, 30.0),
              memory: UriMemory | None = None) -> tuple[OnvifSource, States]:
        states: States = []
        source = OnvifSource(address, credentials, profile, rtsp, name="cam/main",
                             sink=sink or Units(), on_state=lambda s, r: states.append((s, r)),
                             stale_after=stale_after, retry=retry, memory=memory)
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


# Starting on the URI remembered from last time (issue 17).

def memory_file(memory: UriMemory, address: str, profile: str = "main") -> dict[str, object]:
    path = memory.path(address, profile)
    assert path is not None
    loaded: dict[str, object] = json.loads(path.read_text())
    return loaded


async def test_a_remembered_uri_plays_while_the_device_does_not_answer(
        make: Make, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    memory = UriMemory(tmp_path)
    async with onvif_camera() as cam:
        first, _ = make(cam.address, memory=memory)
        await first.start()
        await eventually(lambda: live(first), within=20, what="the first source to be live")
        await first.stop()
        assert memory_file(memory, cam.address)["uri"] == cam.camera.url("main")

        await cam.device.close()  # the device is gone; its camera streams on
        units = Units()
        refused = f"ONVIF {cam.address}: GetServices: "

        def said(level: int) -> int:
            return sum(refused in r.getMessage() for r in caplog.records if r.levelno == level)

        with caplog.at_level(logging.DEBUG, logger="drivers.onvif.source"):
            second, states = make(cam.address, memory=memory, sink=units, retry=(0.2, 0.5))
            await second.start()
            assert (await units.take(1, within=20))[0].keyframe
            await eventually(lambda: live(second), within=10, what="the second source to be live")
            await eventually(lambda: said(logging.DEBUG) >= 2, within=20,
                             what="the device to be asked three times")
        # The device's problem is a warning, once, and not the camera's: it stays live, and
        # never said down.
        assert said(logging.WARNING) == 1
        assert live(second) and second.resolutions == 0
        assert not any(state is SourceState.DOWN for state, _ in states)
        assert any("remembered stream URI" in r.getMessage() for r in caplog.records
                   if r.levelno == logging.INFO)


@pytest.mark.parametrize("wrong", ["path", "port"])
async def test_a_wrong_remembered_uri_is_replaced_by_the_devices_answer(
        make: Make, rtsp: Rtsp, tmp_path: Path, wrong: str) -> None:
    memory = UriMemory(tmp_path)
    async with onvif_camera() as cam:
        answer = cam.camera.url("main")
        stale = (answer.replace("/main", "/gone") if wrong == "path"
                 else f"rtsp://127.0.0.1:{free_port()}/cam/main")
        memory.remember(cam.address, "main", stale)
        source, states = make(cam.address, memory=memory)
        await source.start()
        await eventually(lambda: live(source), within=20, what="the source to be live")
        assert rtsp.urls == [stale, answer]
        assert source.resolutions == 1
        assert memory_file(memory, cam.address)["uri"] == answer
        # The stale URI's own error never showed: until the device answered, the camera
        # was asking it (then live on the answer).
        downs = [r for s, r in states if s is SourceState.DOWN]
        assert not downs, downs


async def test_a_remembered_uri_that_fails_shows_why_the_device_did_not_answer(
        make: Make, rtsp: Rtsp, tmp_path: Path) -> None:
    # Nothing vouches for a remembered URI: while it fails, the device's problem says more.
    memory = UriMemory(tmp_path)
    address = f"http://127.0.0.1:{free_port()}/onvif/device_service"
    memory.remember(address, "main", f"rtsp://127.0.0.1:{free_port()}/cam/main")
    source, states = make(address, memory=memory, retry=(0.2, 0.5))
    await source.start()
    refused = f"ONVIF {address}: GetServices: "
    await eventually(lambda: source.stats.reason.startswith(refused), within=20,
                     what="the device's problem as the reason")
    assert source.stats.state is SourceState.DOWN
    assert any(s is SourceState.DOWN and r.startswith(refused) for s, r in states)
    assert len(rtsp.urls) == 1  # it kept trying the remembered URI all the same


@pytest.mark.parametrize("case", ["malformed", "another device", "not rtsp"])
async def test_a_memory_file_not_for_this_stream_is_ignored(
        make: Make, rtsp: Rtsp, tmp_path: Path, case: str) -> None:
    memory = UriMemory(tmp_path)
    async with onvif_camera() as cam:
        path = memory.path(cam.address, "main")
        assert path is not None
        answer = cam.camera.url("main")
        if case == "malformed":
            path.write_text('{"version": 1, "address": "' + cam.address)
        elif case == "another device":  # a stream that plays, were it wrongly read
            path.write_text(json.dumps({
                "version": 1, "address": "http://127.0.0.1:1/onvif/device_service",
                "profile": "main", "uri": cam.camera.url("sub")}))
        else:
            memory.remember(cam.address, "main", "http" + answer[4:])
        source, _ = make(cam.address, memory=memory)
        await source.start()
        await eventually(lambda: live(source), within=20, what="the source to be live")
        # Nothing was read before the device answered; the answer is remembered now.
        assert rtsp.urls == [answer]
        assert memory_file(memory, cam.address) == {
            "version": 1, "address": cam.address, "profile": "main", "uri": answer}


@pytest.fixture
def unwritable(tmp_path: Path) -> Path:
    """A memory directory that cannot be made, for root too (which CI runs as): a file
    stands where its parent directory should be."""
    (tmp_path / "cache").write_text("")
    return tmp_path / "cache" / "onvif"


async def test_an_unwritable_memory_does_not_stop_the_source(
        make: Make, unwritable: Path, caplog: pytest.LogCaptureFixture) -> None:
    async with onvif_camera() as cam:
        with caplog.at_level(logging.WARNING):
            main, _ = make(cam.address, profile="main", memory=UriMemory(unwritable))
            sub, _ = make(cam.address, profile="sub", memory=UriMemory(unwritable))
            await main.start()
            await sub.start()
            await eventually(lambda: live(main) and live(sub), within=20,
                             what="both sources to be live")
    # Said once for both streams, naming the directory.
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and str(unwritable) in warnings[0]
