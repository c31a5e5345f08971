"""An `onvif` camera in the camera service: RTSP at the URIs its ONVIF device gives.

The simulated camera (RTSP, wanting a password) and its ONVIF device (SOAP over
HTTP, wanting the same) run on 127.0.0.1; `camera@gate` is hosted in-process by
the real runner, configured only with the device's address, the profiles and a
credentials file.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from edge.bus import topics
from edge.bus.client import BusClient
from edge.bus.endpoints import Endpoints
from edge.bus.messages import Alert, CameraStatus, CameraStream
from edge.config import parse_config
from edge.services.camera import CameraService
from tests import support
from tests.support import Inbox
from tests.support.onvif_client import CREDENTIALS, PASSWORD, USER, OnvifCamera, onvif_camera

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def cam() -> AsyncIterator[OnvifCamera]:
    async with onvif_camera(rtsp_auth=True) as c:
        yield c


def onvif_config(address: str, secret: str) -> dict[str, object]:
    return {"cameras": [{
        "id": "gate", "name": "Gate", "credentials": {"file": secret},
        "main": {"onvif": address, "profile": "main"},
        "sub": {"onvif": address, "profile": "sub"}}]}


async def test_onvif_camera_goes_live_on_both_profiles(
        bus: BusClient, endpoints: Endpoints, tmp_path: Path, cam: OnvifCamera) -> None:
    (tmp_path / "gate.secret").write_text(CREDENTIALS + "\n")
    cfg = parse_config(onvif_config(cam.address, "gate.secret"))
    box = Inbox(bus.subscribe(topics.cam("gate")))
    async with support.hosted(CameraService, "camera@gate", cfg, tmp_path / "vehicle.toml",
                              endpoints, ready_within=10):
        st = await box.expect(CameraStatus, lambda m: m.state == "live", within=30)
        assert (st.width, st.height, st.reason) == (1280, 720, "")
        sub = await box.expect(CameraStream, topic=topics.cam_stream("gate", "sub"), within=30)
        assert (sub.width, sub.height) == (640, 360)
    # Each stream asked the device for its URI; the RTSP login took the same secret.
    assert cam.device.requests["GetStreamUri"] >= 2
    for _, message, _ in box.seen:
        assert PASSWORD not in repr(message)


async def test_wrong_credentials_are_the_reason_the_camera_is_down(
        bus: BusClient, endpoints: Endpoints, tmp_path: Path, cam: OnvifCamera) -> None:
    (tmp_path / "wrong.secret").write_text(f"{USER}:nope\n")
    cfg = parse_config(onvif_config(cam.address, "wrong.secret"))
    box = Inbox(bus.subscribe(topics.cam("gate"), topics.ALERT))
    async with support.hosted(CameraService, "camera@gate", cfg, tmp_path / "vehicle.toml",
                              endpoints, ready_within=10):
        down = await box.expect(CameraStatus, lambda m: m.state == "down", within=30)
        reason = (f"ONVIF {cam.address}: GetDeviceInformation: wrong user name or password "
                  "(NotAuthorized)")
        assert down.reason == reason
        alert = await box.expect(Alert, within=10)
        assert alert.text == f"Gate is down: {reason}"
    assert "GetStreamUri" not in cam.device.requests
    for _, message, _ in box.seen:
        assert "nope" not in repr(message)
