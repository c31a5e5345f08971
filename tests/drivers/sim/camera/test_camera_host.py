"""Several simulated cameras in one event loop (`drivers.sim.camera.host`, `edge sim
cameras`): each serves its own URL, codec and profile, an ONVIF one its device and
credentials; a camera that cannot listen or prepare is one error line and is tried again
while the others serve; none able to listen is `NoneStarted`."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest

from drivers.onvif.client import OnvifClient
from drivers.onvif.errors import OnvifError
from drivers.rtsp.sps import parse_sps
from drivers.sim.camera.host import CameraSpec, HostedCamera, camera_host
from drivers.sim.device_host import DeviceHost, NoneStarted
from tests.support import eventually, free_port
from tests.support.rtsp import RawRtspClient

pytestmark = pytest.mark.timeout(60)

# Small pictures and one stream: the loops' one-off encodes stay cheap on a shared machine.
SMALL: dict[str, Any] = {"main": (640, 360), "sub": None, "loop_seconds": 1.0}
# Functional bound: a first start encodes each loop (cached on disk after), on two cores
# shared with other tests.
READY_S = 40.0
HOST_LOG = "drivers.sim.device_host"


async def describe(port: int, name: str, auth: str | None = None) -> tuple[int, str]:
    """DESCRIBE rtsp://127.0.0.1:PORT/NAME/main: (status, SDP)."""
    client = await RawRtspClient.connect("127.0.0.1", port)
    client.auth = auth
    try:
        reply = await client.request("DESCRIBE", f"rtsp://127.0.0.1:{port}/{name}/main",
                                     {"Accept": "application/sdp"})
        return reply.status, reply.body.decode()
    finally:
        await client.close()


async def serving(port: int, name: str, auth: str | None = None) -> str:
    """The camera's SDP once it answers DESCRIBE with 200 (503 while it prepares)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + READY_S
    while True:
        with contextlib.suppress(OSError):
            status, sdp = await describe(port, name, auth)
            if status == 200:
                return sdp
            assert status == 503, f"camera {name} on {port} answered {status}"
        assert loop.time() < deadline, f"camera {name} on {port} not serving in {READY_S} s"
        await asyncio.sleep(0.1)


def sdp_profile(sdp: str) -> tuple[str, int]:
    """(codec, profile_idc) from the SDP's rtpmap and its SPS."""
    rtpmap = next(line for line in sdp.splitlines() if line.startswith("a=rtpmap:"))
    sprop = next(part for line in sdp.splitlines() if line.startswith("a=fmtp:")
                 for part in line.split(";") if part.strip().startswith("sprop-parameter-sets="))
    sps = base64.b64decode(sprop.split("=", 1)[1].split(",")[0])
    return rtpmap.split()[1].split("/")[0], parse_sps("h264", sps).profile_idc


@contextlib.asynccontextmanager
async def running(host: DeviceHost) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(host.run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@contextlib.contextmanager
def taken_port() -> Any:
    """A port something else listens on (no SO_REUSEADDR trick lets a server bind it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock


async def test_each_camera_of_one_host_serves_its_own_url_codec_and_profile() -> None:
    plain, high = free_port(), free_port()
    rtsp, onvif = free_port(), free_port()
    specs = [CameraSpec("plain", plain),
             CameraSpec("high", high, profile="high"),
             CameraSpec("pier", rtsp, onvif_port=onvif, onvif_user="admin",
                        onvif_password="s3cret")]
    async with running(camera_host(specs, **SMALL)) as task:
        assert sdp_profile(await serving(plain, "plain")) == ("H264", 66)
        assert sdp_profile(await serving(high, "high")) == ("H264", 100)
        # A camera serves only its own name, on its own port.
        assert (await describe(plain, "high"))[0] == 404
        # The ONVIF camera's RTSP asks for the ONVIF credentials...
        assert (await describe(rtsp, "pier"))[0] == 401
        # ...and its device takes them (and refuses others).
        async with OnvifClient(f"http://127.0.0.1:{onvif}", "admin:s3cret", timeout=10) as c:
            uri = await c.stream_uri((await c.profiles())[0].token)
        assert uri.endswith(f":{rtsp}/pier/main"), uri
        with pytest.raises(OnvifError):
            async with OnvifClient(f"http://127.0.0.1:{onvif}", "admin:wrong", timeout=10):
                pass
        assert not task.done()
    # Cancelled (as SIGTERM does): every port is free again.
    for port in (plain, high, rtsp, onvif):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


async def test_a_camera_whose_port_is_taken_is_one_line_and_serves_once_it_is_free(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=HOST_LOG)
    free = free_port()
    with taken_port() as sock:
        taken = sock.getsockname()[1]
        host = DeviceHost([HostedCamera(CameraSpec("free", free), **SMALL),
                           HostedCamera(CameraSpec("late", taken), **SMALL)],
                           retry_first_s=0.1, retry_max_s=0.2)
        async with running(host):
            await serving(free, "free")
            # Several retries have failed by now (0.2 s apart): still one line.
            await asyncio.sleep(1.0)
            errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
            assert errors == [f"camera late: cannot listen on 127.0.0.1:{taken}: "
                              "Address already in use; trying again"], errors
            assert host.serving == {"camera free"}
            sock.close()
            await serving(taken, "late")
            assert host.serving == {"camera free", "camera late"} and not host.problems
    assert any(r.getMessage() == "camera late: started again" for r in caplog.records)


async def test_no_camera_able_to_listen_is_none_started_with_a_line_each() -> None:
    with taken_port() as one, taken_port() as two:
        ports = [one.getsockname()[1], two.getsockname()[1]]
        host = camera_host([CameraSpec("a", ports[0]), CameraSpec("b", ports[1])], **SMALL)
        with pytest.raises(NoneStarted) as caught:
            await asyncio.wait_for(host.run(), 20)
    assert caught.value.problems == [
        f"camera {name}: cannot listen on 127.0.0.1:{port}: Address already in use"
        for name, port in zip("ab", ports, strict=True)]


async def test_an_onvif_port_taken_is_named_as_the_onvif_one() -> None:
    rtsp = free_port()
    with taken_port() as sock:
        onvif = sock.getsockname()[1]
        host = camera_host([CameraSpec("pier", rtsp, onvif_port=onvif)], **SMALL)
        with pytest.raises(NoneStarted) as caught:
            await asyncio.wait_for(host.run(), 20)
    assert caught.value.problems == [
        f"camera pier: cannot listen on 127.0.0.1:{onvif} (ONVIF): Address already in use"]
    # Its RTSP port was given back.
    with socket.socket() as free:
        free.bind(("127.0.0.1", rtsp))


async def test_a_camera_that_cannot_prepare_its_streams_is_retried_while_the_others_serve(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=HOST_LOG)
    good, bad = free_port(), free_port()
    # x264 takes no odd picture size: a real encoder failure, not a mock's.
    host = DeviceHost([HostedCamera(CameraSpec("good", good), **SMALL),
                       HostedCamera(CameraSpec("bad", bad), **{**SMALL, "main": (641, 361)})],
                      retry_first_s=0.1, retry_max_s=0.2)
    async with running(host) as task:
        await serving(good, "good")
        await eventually(lambda: "camera bad" in host.problems, within=READY_S,
                         what="the bad camera's failure")
        assert host.problems["camera bad"].startswith("camera bad: cannot prepare its streams")
        assert "\n" not in host.problems["camera bad"]
        # It is started again (each time listening first, so its clients get 503s)...
        await eventually(lambda: host.starts.get("camera bad", 0) >= 3, within=READY_S,
                         what="the bad camera started again")
        assert (await describe(good, "good"))[0] == 200 and not task.done()
    # ...and said so once: the same failure again is no new line.
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].startswith("camera bad: cannot prepare its "
                                                     "streams"), errors
