"""The centre steers a camera through the uplink: `POST /api/cameras/<id>/ptz`, and the
viewer page's buttons in Chromium.

Everything is real: the simulated ONVIF camera (SOAP and RTSP), `camera@…` (which
decides who may steer) and `uplink`, under the real runner on a real broker. One
device is configured twice: `gate` lets the centre steer it, `gate-b` does not.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from edge.bus import topics
from edge.bus.client import BusClient
from edge.bus.endpoints import Endpoints
from edge.bus.messages import PtzCommand, Reply
from edge.services.camera import CameraService
from edge.services.uplink import UplinkService
from tests.support import eventually
from tests.support.chromium import viewer_page
from tests.support.onvif_client import CREDENTIALS, OnvifCamera, onvif_camera
from tests.support.uplink import TOKEN, Vehicle, hosted, write_config

pytestmark = pytest.mark.timeout(90)

@dataclass
class Steerable:
    vehicle: Vehicle
    cam: OnvifCamera
    services: dict[str, CameraService]


@asynccontextmanager
async def steerable(tmp: Path, endpoints: Endpoints, bus: BusClient
                    ) -> AsyncIterator[Steerable]:
    """The ONVIF camera as `gate` (the centre may steer it) and `gate-b` (it may not),
    their camera services and the uplink."""
    async with AsyncExitStack() as stack:
        cam = await stack.enter_async_context(onvif_camera(rtsp_auth=True))
        (tmp / "gate.secret").write_text(CREDENTIALS + "\n")
        source = {"onvif": cam.address, "profile": "main"}
        config, path = write_config(tmp, [
            {"id": "gate", "name": "Gate", "credentials": {"file": "gate.secret"},
             "main": source, "ptz": {"centre": True}},
            {"id": "gate-b", "name": "Gate B", "credentials": {"file": "gate.secret"},
             "main": source}])
        services: dict[str, CameraService] = {}
        for camera_id in ("gate", "gate-b"):
            camera = await stack.enter_async_context(hosted(
                CameraService, f"camera@{camera_id}", config, path, endpoints))
            assert isinstance(camera, CameraService)
            services[camera_id] = camera
        service = await stack.enter_async_context(
            hosted(UplinkService, "uplink", config, path, endpoints))
        assert isinstance(service, UplinkService)
        http = await stack.enter_async_context(aiohttp.ClientSession())
        v = Vehicle(service, service.url, http, bus, {"gate": cam.camera}, config)
        # Who may steer each camera, as its service said: the page offers steering by it.
        await eventually(lambda: all(control(v, c) is not None for c in services),
                         within=15, what="the cameras' control state at the uplink")
        yield Steerable(v, cam, services)


def control(v: Vehicle, camera_id: str) -> dict[str, Any] | None:
    cam = v.uplink.state.camera(camera_id)
    return None if cam is None else cam.control_json()


async def steer(v: Vehicle, camera_id: str, body: object, *, token: str | None = TOKEN,
                raw: bytes | None = None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    data = raw if raw is not None else None
    async with v.http.post(f"{v.url}/api/cameras/{camera_id}/ptz", headers=headers,
                           json=None if raw is not None else body, data=data) as r:
        if r.content_type == "application/json":
            return r.status, await r.json()
        return r.status, (await r.text()).strip()


async def test_the_centre_steers_where_allowed_and_is_told_why_not_elsewhere(
        tmp_path: Path, endpoints: Endpoints, bus: BusClient) -> None:
    async with steerable(tmp_path, endpoints, bus) as s:
        v, cam = s.vehicle, s.cam
        gate = control(v, "gate")
        assert gate is not None and gate["kind"] == "onvif" and gate["centre_allowed"]
        assert gate["holder"] == ""
        gate_b = control(v, "gate-b")
        assert gate_b is not None and gate_b["kind"] == "onvif"
        assert not gate_b["centre_allowed"]
        async with v.http.get(f"{v.url}/api/state", headers=v.auth) as r:
            shown = {c["id"]: c["control"] for c in (await r.json())["cameras"]}
        assert shown["gate"]["centre_allowed"] and not shown["gate-b"]["centre_allowed"]

        # Allowed: the camera pans right until told to stop; the centre holds it.
        start = cam.ptz.position().pan
        status, answer = await steer(v, "gate", {"action": "move", "pan": 0.5})
        assert (status, answer["status"]) == (200, "accepted"), answer
        await eventually(lambda: cam.ptz.position().pan > start + 0.05, within=10,
                         what="the camera panning right")
        status, answer = await steer(v, "gate", {"action": "stop"})
        assert (status, answer["status"]) == (200, "accepted"), answer
        assert not cam.ptz.moving()[0]
        await eventually(lambda: (control(v, "gate") or {}).get("holder") == "centre",
                         within=10, what="the centre shown holding gate")
        assert (control(v, "gate") or {})["holder_who"] == "centre page 127.0.0.1"

        # Not allowed: 403 with the camera service's reason; the camera did not move.
        here = cam.ptz.position()
        status, answer = await steer(v, "gate-b", {"action": "move", "pan": 0.5})
        assert status == 403 and answer["status"] == "rejected"
        assert answer["detail"] == ("the centre may not steer camera gate-b "
                                    "(cameras.ptz.centre is false)")
        assert cam.ptz.position() == here

        # The commander comes first: while the dashboard holds gate, the centre waits.
        reply = (await bus.request(topics.camera_service("gate"), PtzCommand(
            action="home", controller="commander", who="ops@dashboard"))).message
        assert isinstance(reply, Reply) and reply.status == "accepted", reply
        status, answer = await steer(v, "gate", {"action": "move", "tilt": 0.5})
        assert status == 403
        assert "steered by the commander (ops@dashboard)" in answer["detail"]

        # A bad request names what is wrong; nothing reaches the camera service.
        bad: list[tuple[object, str]] = [
            ({"action": "spin"}, "action must be one of move, stop, zoom, preset, "
                                 "set_preset, home, release"),
            ({"action": "move", "pan": 2}, "pan must be a number from -1 to 1"),
            ({"action": "move", "tilt": "up"}, "tilt must be a number from -1 to 1"),
            ({"action": "zoom", "zoom": True}, "zoom must be a number from -1 to 1"),
            ({"action": "preset"}, "preset must be a whole number from 1 to 255"),
            ({"action": "preset", "preset": 2.5}, "preset must be a whole number from 1 to 255"),
            ({"action": "move", "speed": 1}, "unknown field 'speed' (the fields are action, "
                                             "pan, tilt, zoom, preset)"),
            (["move"], 'the request must be a JSON object, like {"action": "move", '
                       '"pan": 0.5}'),
        ]
        for body, why in bad:
            assert await steer(v, "gate", body) == (400, why), body
        assert await steer(v, "gate", None, raw=b"move left") == (
            400, 'the request must be JSON, like {"action": "move", "pan": 0.5}')
        # Who and where.
        assert await steer(v, "nowhere", {"action": "stop"}) == (
            404, "no camera 'nowhere' on this vehicle")
        status, text = await steer(v, "gate", {"action": "stop"}, token=None)
        assert status == 401 and text.startswith("no bearer token")
        status, text = await steer(v, "gate", {"action": "stop"}, token="wrong-token-123")
        assert status == 401 and text.startswith("wrong bearer token")


@pytest.mark.timeout(150)
async def test_the_viewer_page_steers_with_held_buttons(
        tmp_path: Path, endpoints: Endpoints, bus: BusClient) -> None:
    async with steerable(tmp_path, endpoints, bus) as s:
        v, cam = s.vehicle, s.cam
        await v.wait_live("gate", timeout=30)
        async with viewer_page(v.url, TOKEN, tmp_path / "chromium-profile") as viewer:
            page, errors = viewer.page, viewer.errors

            # A camera the centre may not steer: no steering shown.
            await page.click('.camera[data-camera="gate-b"]')
            await page.wait_for_function("window.edgeViewer.playing && "
                                         "window.edgeViewer.playing.camera === 'gate-b'")
            await page.wait_for_selector("#player:not([hidden])")
            assert not await page.is_visible("#ptz")

            # One it may: the arrows, and who holds it.
            await page.click('.camera[data-camera="gate"]')
            await page.wait_for_selector("#ptz:not([hidden])", timeout=15_000)
            assert await page.text_content("#ptz-holder") == "control: free"
            # Held longer than the camera service's dead-man time (1 s): the page
            # renews the move while the button is down.
            start = cam.ptz.position().pan
            await page.hover("#ptz-right")
            await page.mouse.down()
            try:
                await eventually(lambda: cam.ptz.position().pan > start + 0.4, within=20,
                                 what="the camera panning right while the button is held")
                assert cam.ptz.moving()[0]
                await page.wait_for_function(
                    "document.getElementById('ptz-holder').textContent.startsWith("
                    "'control: the centre (centre page 127.0.0.1) until ')", timeout=10_000)
            finally:
                await page.mouse.up()
            await eventually(lambda: not cam.ptz.moving()[0], within=10,
                             what="the camera stopped when the button was let go")
            # The page's stop, not the camera service's dead-man, stopped it.
            ptz = s.services["gate"].ptz
            assert ptz is not None and ptz.dead_man_stops == 0

            # The commander takes over: the page says so, and its press is refused.
            await bus.request(topics.camera_service("gate"), PtzCommand(
                action="home", controller="commander", who="ops@dashboard"))
            await page.wait_for_function(
                "document.getElementById('ptz-holder').textContent.startsWith("
                "'control: the commander (ops@dashboard) until ')", timeout=10_000)
            here = cam.ptz.position()
            await page.click("#ptz-zoom-in")
            await page.wait_for_selector("#ptz-error:not([hidden])", timeout=10_000)
            assert "steered by the commander" in (await page.text_content("#ptz-error") or "")
            if os.environ.get("EDGE_SCREENSHOT_DIR"):
                await page.screenshot(path=str(Path(os.environ["EDGE_SCREENSHOT_DIR"]) /
                                               "viewer-ptz.png"))
            assert cam.ptz.position() == here
            assert not errors, errors
