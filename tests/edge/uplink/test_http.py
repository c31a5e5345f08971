"""The HTTP surface without media: every refusal, CORS, ICE Link headers, the API, the page.

The app is the real one (UplinkHttp, SessionManager, UplinkState) on a real
socket; camera state is set as the bus would have set it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import zmq
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from edge.bus.endpoints import Endpoints
from edge.bus.messages import CameraStatus, CameraStream
from edge.config import parse_config
from edge.uplink.peer import ice_servers
from edge.uplink.session import SessionManager
from edge.uplink.state import UplinkState
from edge.uplink.whep import UplinkHttp
from tests.support.uplink import TOKEN, offer_sdp

pytestmark = pytest.mark.timeout(30)

Client = TestClient[web.Request, web.Application]

AUTH = {"Authorization": f"Bearer {TOKEN}"}
SDP = {**AUTH, "Content-Type": "application/sdp"}


def set_camera(state: UplinkState, camera: str, live: bool, codec: str = "h264") -> None:
    cam = state.cameras[camera]
    cam.status = CameraStatus(camera_id=camera, state="live" if live else "down",
                              reason="" if live else "connection refused", codec=codec)
    cam.status_mono = time.monotonic()
    cam.streams["main"] = CameraStream(camera_id=camera, profile="main", codec=codec,
                                       endpoint="ipc:///nonexistent/media.sock")


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[tuple[Client, UplinkHttp]]:
    (tmp_path / "turn.secret").write_text("s3cret\n")
    config = parse_config({
        "cameras": [{"id": "gate", "name": "Gate", "main": "rtsp://127.0.0.1:1/gate/main"},
                    {"id": "furnace", "name": "Furnace", "main": "rtsp://127.0.0.1:1/f/main"}],
        "uplink": {"max_transcodes": 0, "ice_servers": [
            "stun:stun.example.org:3478",
            {"url": "turn:turn.example.org:3478", "username": "veh1",
             "credential": {"file": "turn.secret"}}]}})
    state = UplinkState(config)
    manager = SessionManager(config.uplink, state, zmq.Context.instance(),
                             Endpoints("ipc://a", "ipc://b", "ipc://c", tmp_path))
    state.sessions = manager.to_json
    http = UplinkHttp(manager, state, TOKEN.encode(), ice_servers(config.uplink.ice, tmp_path))
    client = TestClient(TestServer(http.app))
    await client.start_server()
    try:
        yield client, http
    finally:
        http.stopping.set()
        await manager.close_all()
        await client.close()


async def test_page_and_static_files_are_public(app: tuple[Client, UplinkHttp]) -> None:
    client, _ = app
    page = await client.get("/")
    assert page.status == 200 and "/viewer.js" in await page.text()
    for name, kind in (("viewer.js", "text/javascript"), ("viewer.css", "text/css")):
        r = await client.get(f"/{name}")
        assert r.status == 200 and r.headers["Content-Type"].startswith(kind)
    assert (await client.get("/favicon.ico")).status == 404
    body = await (await client.get("/")).text()
    assert "http://" not in body and "https://" not in body  # nothing from the internet


async def test_cors_preflight_and_ice_servers(app: tuple[Client, UplinkHttp]) -> None:
    client, _ = app
    r = await client.options("/whep/gate", headers={
        "Origin": "https://centre.example", "Access-Control-Request-Method": "POST"})
    assert r.status == 204
    assert r.headers["Accept-Post"] == "application/sdp"
    assert r.headers["Access-Control-Allow-Origin"] == "*"
    assert "Authorization" in r.headers["Access-Control-Allow-Headers"]
    assert "Location" in r.headers["Access-Control-Expose-Headers"]
    assert "Link" not in r.headers  # ICE servers only for who holds the token
    r = await client.options("/whep/gate", headers=AUTH)
    assert r.headers.getall("Link") == [
        '<stun:stun.example.org:3478>; rel="ice-server"',
        '<turn:turn.example.org:3478>; rel="ice-server"; username="veh1"; credential="s3cret"'
        '; credential-type="password"']


@pytest.mark.parametrize("headers", [
    {"Content-Type": "application/sdp"},
    {"Content-Type": "application/sdp", "Authorization": "Bearer wrong-token-123456789"},
    {"Content-Type": "application/sdp", "Authorization": f"Basic {TOKEN}"},
    {"Content-Type": "application/sdp", "Authorization": f"Bearer {TOKEN}x"},
])
async def test_no_or_wrong_token_is_401(app: tuple[Client, UplinkHttp],
                                        headers: dict[str, str]) -> None:
    client, _ = app
    r = await client.post("/whep/gate", data=offer_sdp(), headers=headers)
    assert r.status == 401 and r.headers["WWW-Authenticate"].startswith("Bearer")
    assert "bearer token" in await r.text()
    for path in ("/api/state", "/api/events", "/api/cameras/gate/thumbnail"):
        assert (await client.get(path, headers=headers)).status == 401


async def test_refusals_say_why(app: tuple[Client, UplinkHttp]) -> None:
    client, http = app
    r = await client.post("/whep/gate", data=offer_sdp(), headers={**AUTH,
                                                                   "Content-Type": "text/plain"})
    assert r.status == 415 and "application/sdp" in await r.text()
    r = await client.post("/whep/nowhere", data=offer_sdp(), headers=SDP)
    assert r.status == 404 and 'no camera "nowhere"' in await r.text()
    r = await client.post("/whep/gate", data="v=0\r\nnonsense", headers=SDP)
    assert r.status == 400 and "no video section" in await r.text()
    r = await client.post("/whep/gate", data=offer_sdp(h264=False), headers=SDP)
    assert r.status == 400 and "no H.264" in await r.text()
    r = await client.post("/whep/gate?profile=best", data=offer_sdp(), headers=SDP)
    assert r.status == 400 and "profile must be one of main, sub, auto" in await r.text()
    # Never heard of: not live, come back later.
    r = await client.post("/whep/gate", data=offer_sdp(), headers=SDP)
    assert r.status == 409 and r.headers["Retry-After"] == "2"
    assert "camera gate is not live (unknown)" in await r.text()
    set_camera(http.state, "gate", live=False)
    r = await client.post("/whep/gate", data=offer_sdp(), headers=SDP)
    assert r.status == 409 and "connection refused" in await r.text()
    # An H.265 camera needs a transcoder; this vehicle allows none.
    set_camera(http.state, "furnace", live=True, codec="h265")
    r = await client.post("/whep/furnace", data=offer_sdp(), headers=SDP)
    assert r.status == 503 and "uplink.max_transcodes" in await r.text()
    assert r.headers["Retry-After"]
    assert (await client.delete("/whep/gate/nosuch", headers=AUTH)).status == 404
    assert (await client.patch("/whep/gate/nosuch", headers=AUTH)).status == 404
    # The replay bar's controls, on a vehicle's uplink: there is no replay to drive.
    r = await client.post("/api/replay", json={"action": "pause"}, headers=AUTH)
    assert r.status == 404 and "not a replay" in await r.text()


async def test_an_internal_error_is_one_line_not_a_traceback(
        app: tuple[Client, UplinkHttp], monkeypatch: pytest.MonkeyPatch) -> None:
    client, http = app

    async def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(http.manager, "create", broken)
    r = await client.post("/whep/gate", data=offer_sdp(), headers=SDP)
    text = await r.text()
    assert r.status == 500 and "Traceback" not in text and "a bug" not in text
    assert text.strip() == "internal error in the uplink (its log has the details)"


async def test_state_events_and_thumbnails(app: tuple[Client, UplinkHttp]) -> None:
    client, http = app
    r = await client.get("/api/state", headers=AUTH)
    state = await r.json()
    assert [c["id"] for c in state["cameras"]] == ["gate", "furnace"]
    assert state["sessions"] == [] and "links" in state and "drones" in state
    assert (await client.get("/api/cameras/gate/thumbnail", headers=AUTH)).status == 404
    http.state.cameras["gate"].thumbnail = b"\xff\xd8jpeg"
    http.state.cameras["gate"].thumbnail_ns = 5
    r = await client.get("/api/cameras/gate/thumbnail", headers=AUTH)
    assert r.status == 200 and r.content_type == "image/jpeg" and await r.read() == b"\xff\xd8jpeg"
    events = await client.get("/api/events", headers=AUTH)
    assert events.headers["Content-Type"] == "text/event-stream"
    first = await events.content.readuntil(b"\n\n")
    assert first.startswith(b"event: state\ndata: {")
    set_camera(http.state, "gate", live=True)
    http.state.changed("camera", "gate")
    change = await events.content.readuntil(b"\n\n")
    assert change.startswith(b"event: camera\ndata: {") and b'"state":"live"' in change
    events.close()


async def test_the_token_is_never_logged(app: tuple[Client, UplinkHttp],
                                         caplog: pytest.LogCaptureFixture) -> None:
    client, _ = app
    caplog.set_level(logging.DEBUG)
    for headers in (AUTH, SDP, {"Authorization": f"Bearer {TOKEN}-wrong"}):
        await client.post("/whep/gate", data=offer_sdp(), headers=headers)
        await client.get("/api/state", headers=headers)
    assert TOKEN not in caplog.text


async def test_which_stream_auto_picks(app: tuple[Client, UplinkHttp], tmp_path: Path) -> None:
    from edge.bus.messages import LinkStatus
    from edge.uplink.state import LinkState

    _, http = app
    manager, state = http.manager, http.state
    for cam in ("gate", "furnace"):
        set_camera(state, cam, live=True)
    state.cameras["gate"].streams["sub"] = CameraStream(camera_id="gate", profile="sub",
                                                        codec="h264")
    gate, furnace = state.cameras["gate"], state.cameras["furnace"]
    # No links configured: nothing says the pipe is thin.
    assert manager.streams.resolve(gate, "auto").profile == "main"
    assert manager.streams.resolve(gate, "sub").profile == "sub"
    assert manager.streams.resolve(furnace, "sub").profile == "main"  # no sub stream: main it is
    state.links["sat"] = LinkState("sat", status=LinkStatus(link_id="sat", state="up"))
    state.links["sat"].config = parse_config({"links": [{
        "id": "sat", "name": "Satellite", "kind": "satellite", "constrained": True}]}).links[0]
    assert state.constrained() and manager.streams.resolve(gate, "auto").profile == "sub"
    state.links["lte"] = LinkState("lte", status=LinkStatus(link_id="lte", state="up"))
    assert not state.constrained()  # an unconstrained link is up
    state.links["lte"].status = LinkStatus(link_id="lte", state="down")
    assert state.constrained() and manager.streams.resolve(gate, "main").profile == "main"
