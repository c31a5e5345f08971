"""WHIP push to a WHIP server that is not ours: werift (npm), a WebRTC stack independent of
aiortc, started by the test (tests/support/whip.py).

A real simulated camera feeds `camera@ID`, whose media plane `uplink` reads and pushes:
frames arrive at werift; the server is killed and started again and the push retries,
then is live again with frames arriving; a wrong token fails with one clear line; a
server that refuses connections is retried until it is there; the push follows the link
to the centre in-band; and the uplink serves WHEP all the while.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from edge.bus import topics
from edge.bus.client import BusClient
from edge.bus.endpoints import Endpoints
from edge.bus.messages import PushCommand, Reply, UplinkPushStatus
from edge.config import ConfigError, parse_config
from edge.uplink.whip_push import WhipPusher
from tests.support import Inbox, eventually, free_port
from tests.support.uplink import SMALL, LinkFeed, Vehicle, offer_sdp, vehicle
from tests.support.whip import WeriftWhip, require_werift

pytestmark = pytest.mark.timeout(180)

PUSH_TOKEN = "push-token-0123456789abcdef"
# Generous bounds that only keep a broken run from hanging: ICE, DTLS and a GOP on a
# shared 2-core machine, and the push noticing a dead server (ICE consent: 30 s without
# an answer, checked every ~5 s).
WITHIN_S = 60.0
FRAMES = 30  # a second of video at the simulated camera's 30 fps


def push_config(tmp: Path, url: str, cameras: list[str], **extra: Any) -> dict[str, Any]:
    (tmp / "push.token").write_text(PUSH_TOKEN + "\n")
    return {"push": {"whip_url": url, "token": {"file": "push.token"}, "cameras": cameras,
                     "retry_min_s": 0.5, "retry_max_s": 2.0, **extra}}


def pusher(v: Vehicle, camera: str) -> WhipPusher:
    assert v.uplink.pushes is not None
    return v.uplink.pushes.pushers[camera]


async def in_state(v: Vehicle, camera: str, state: str, what: str = "") -> WhipPusher:
    def check() -> WhipPusher | None:
        p = v.uplink.pushes.pushers.get(camera) if v.uplink.pushes else None
        return p if p is not None and p.state == state else None

    found = await eventually(check, within=WITHIN_S, every=0.1,
                             what=what or f"the push of {camera} to be {state}")
    assert found is not None
    return found


async def frames_at(whip: WeriftWhip, at_least: int, what: str) -> None:
    got = 0

    async def enough() -> bool:
        nonlocal got
        got = await whip.frames()
        return got >= at_least

    loop = asyncio.get_running_loop()
    deadline = loop.time() + WITHIN_S
    while not await enough():
        assert loop.time() < deadline, f"{what}: {got} frames at the WHIP server"
        await asyncio.sleep(0.2)


async def ask(bus: BusClient, action: str, camera: str) -> Reply:
    env = await bus.request(topics.UPLINK_SERVICE, PushCommand(action=action, camera_id=camera))
    assert isinstance(env.message, Reply)
    return env.message


# -- config ----------------------------------------------------------------------------------
def test_push_config_names_the_bad_field() -> None:
    def problem(push: dict[str, Any]) -> str:
        with pytest.raises(ConfigError) as e:
            parse_config({"uplink": {"push": push}})
        text = str(e.value)
        assert "\n" not in text and "Traceback" not in text
        return text

    ok = parse_config({"uplink": {"push": {"whip_url": "https://centre:8443/whip/v1"}}})
    assert ok.uplink.push is not None and ok.uplink.push.cameras == []
    assert ok.uplink.push.profile == "auto"
    assert "uplink.push.whip_url: required" in problem({})
    assert 'uplink.push.whip_url: expected an http:// or https:// URL like' in \
        problem({"whip_url": "rtsp://x"})
    assert '"{feed}" is not a placeholder: only {vehicle} and {camera} are' in \
        problem({"whip_url": "https://centre/{feed}/whip"})
    assert "uplink.push.whip_url: no user or password" in \
        problem({"whip_url": "https://me:secret@centre/whip"})
    assert "secret" not in problem({"whip_url": "ftp://me:secret@centre/whip"})
    assert "uplink.push.cameras: \"gate\" is listed twice" in \
        problem({"whip_url": "http://c/w", "cameras": ["gate", "gate"]})
    assert "uplink.push.cameras[0]" in problem({"whip_url": "http://c/w", "cameras": ["A B"]})
    assert "uplink.push: retry_max_s (1) is below retry_min_s (5)" in \
        problem({"whip_url": "http://c/w", "retry_min_s": 5, "retry_max_s": 1})
    assert "uplink.push.token" in problem({"whip_url": "http://c/w", "token": "plain"})


async def test_an_unreadable_push_token_stops_the_uplink_with_one_line(
        tmp_path: Path, endpoints: Endpoints, bus: BusClient,
        caplog: pytest.LogCaptureFixture) -> None:
    from edge.services.uplink import UplinkService
    from tests.support.uplink import hosted, write_config

    config, path = write_config(tmp_path, [], {"push": {
        "whip_url": "http://127.0.0.1:9/whip/x", "token": {"file": "missing.token"}}})
    # The runner exits 2 (a config error) with the problem as one log line.
    with pytest.raises(AssertionError, match=r"exit 2"):
        async with hosted(UplinkService, "uplink", config, path, endpoints):
            pass
    said = [r for r in caplog.records if "uplink.push.token" in r.getMessage()]
    assert len(said) == 1 and said[0].exc_info is None
    assert "missing.token: uplink.push.token: cannot read secret" in said[0].getMessage()


# -- pushing to werift -----------------------------------------------------------------------
async def test_frames_arrive_and_the_push_recovers_after_the_server_restarts(
        tmp_path: Path, endpoints: Endpoints, bus: BusClient) -> None:
    require_werift()
    inbox = Inbox(bus.subscribe(topics.UPLINK_PUSH_STATUS))
    async with WeriftWhip(PUSH_TOKEN) as whip, \
            vehicle(tmp_path, endpoints, bus, {"gate": SMALL},
                    uplink=push_config(tmp_path, whip.url("gate"), [])) as v:
        await v.wait_live("gate")
        # Nothing is pushed until asked (cameras = []); then the commander asks.
        assert v.uplink.pushes is not None and not v.uplink.pushes.pushers
        reply = await ask(bus, "start", "gate")
        assert reply.status == "accepted", reply.detail
        await in_state(v, "gate", "live")
        await frames_at(whip, FRAMES, "frames pushed")
        (first,) = (await whip.stats()).values()
        assert first["keyframes"] >= 1 and first["state"] == "connected"
        status = await inbox.expect(UplinkPushStatus, lambda m: any(
            f.camera_id == "gate" and f.state == "live" for f in m.feeds), within=WITHIN_S)
        assert status.whip_url == whip.url("gate")
        feed = next(f for f in status.feeds if f.camera_id == "gate")
        assert feed.profile == "main" and feed.retries == 0 and feed.last_error == ""

        # The server dies without a word: the push notices and retries.
        await whip.kill()
        p = await in_state(v, "gate", "retrying", "the push to notice the server is gone")
        assert p.retries >= 1 and p.last_error and "\n" not in p.last_error

        # Meanwhile the uplink serves WHEP as ever.
        async with v.http.post(v.whep("gate"), data=offer_sdp(),
                               headers={**v.auth, "Content-Type": "application/sdp"}) as r:
            assert r.status == 201, await r.text()
            assert "a=sendonly" in await r.text()
        async with v.http.get(f"{v.url}/api/state", headers=v.auth) as r:
            pushed = (await r.json())["push"]
        assert [f["camera_id"] for f in pushed["feeds"]] == ["gate"]

        # Back on the same port: live again, and frames arrive at the new run.
        await whip.start()
        await in_state(v, "gate", "live", "the push to be live again after the restart")
        await frames_at(whip, FRAMES, "frames pushed after the restart")

        # Stopped from the bus: the server's session is DELETEd (RFC 9725).
        reply = await ask(bus, "stop", "gate")
        assert reply.status == "accepted", reply.detail
        assert pusher(v, "gate").state == "idle"
        sessions = await whip.stats()
        assert sessions and all(s["deleted"] for s in sessions.values()), sessions


async def test_a_wrong_token_fails_with_one_clear_line(
        tmp_path: Path, endpoints: Endpoints, bus: BusClient) -> None:
    async with WeriftWhip("the-centre-expects-this-token") as whip, \
            vehicle(tmp_path, endpoints, bus, {"gate": SMALL},
                    uplink=push_config(tmp_path, whip.url("gate"), ["gate"])) as v:
        p = await in_state(v, "gate", "failed")
        assert p.last_error.startswith("the WHIP server answered 401"), p.last_error
        assert "uplink.push.token" in p.last_error and PUSH_TOKEN not in p.last_error
        assert "\n" not in p.last_error and "Traceback" not in p.last_error
        assert not await whip.stats()  # nothing was set up at the server


async def test_a_server_that_refuses_connections_is_retried_until_it_is_there(
        tmp_path: Path, endpoints: Endpoints, bus: BusClient) -> None:
    whip = WeriftWhip(PUSH_TOKEN)
    whip.port = free_port()  # nothing listens there yet
    async with vehicle(tmp_path, endpoints, bus, {"gate": SMALL},
                       uplink=push_config(tmp_path, whip.url("gate"), ["gate"])) as v:
        await eventually(lambda: pusher(v, "gate").retries >= 2, within=WITHIN_S,
                         what="two failed attempts")
        p = pusher(v, "gate")
        assert p.state in ("retrying", "connecting")
        assert "cannot reach the WHIP server" in p.last_error, p.last_error
        assert "refused" in p.last_error.lower(), p.last_error
        async with whip:
            await in_state(v, "gate", "live", "the push to be live once the server is up")
            await frames_at(whip, FRAMES, "frames pushed")


async def test_push_requests_without_a_whip_server_are_refused_in_words(
        tmp_path: Path, endpoints: Endpoints, bus: BusClient) -> None:
    async with vehicle(tmp_path, endpoints, bus, {"gate": SMALL}) as v:
        reply = await ask(bus, "start", "gate")
        assert reply.status == "rejected" and "[uplink.push]" in reply.detail
        assert v.uplink.pushes is None


async def test_push_requests_for_no_camera_or_no_action_are_refused_in_words(
        tmp_path: Path, endpoints: Endpoints, bus: BusClient) -> None:
    async with vehicle(tmp_path, endpoints, bus, {"gate": SMALL},
                       uplink=push_config(tmp_path, "http://127.0.0.1:9/whip/g", [])):
        reply = await ask(bus, "start", "nowhere")
        assert reply.status == "rejected" and "no camera 'nowhere'" in reply.detail
        assert "gate" in reply.detail
        reply = await ask(bus, "launch", "gate")
        assert reply.status == "rejected" and "start or stop" in reply.detail
        reply = await ask(bus, "stop", "gate")
        assert reply.status == "accepted" and "was not pushed" in reply.detail


CAMERA: dict[str, Any] = {"main": (640, 360), "sub": (448, 256), "loop_seconds": 2.0}
KINDS = {"lte": "lte-private", "sat": "satellite"}
LINKS: list[dict[str, Any]] = [
    {"id": "lte", "name": "4G", "kind": "lte-private", "capacity_kbps": 20_000},
    {"id": "sat", "name": "Satellite", "kind": "satellite", "constrained": True,
     "capacity_kbps": 4_000}]


async def test_the_pushed_stream_follows_the_link_to_the_centre_in_band(
        tmp_path: Path, endpoints: Endpoints, bus: BusClient) -> None:
    require_werift()
    async with WeriftWhip(PUSH_TOKEN) as whip, \
            LinkFeed(bus, KINDS, active="sat") as links, \
            vehicle(tmp_path, endpoints, bus, {"gate": CAMERA}, links=LINKS,
                    uplink={"upgrade_after_s": 0,
                            **push_config(tmp_path, whip.url("gate"), [])}) as v:
        await eventually(lambda: len(v.uplink.state.cameras["gate"].streams) == 2,
                         within=WITHIN_S, what="both streams announced")
        await eventually(lambda: (a := v.uplink.state.active_link()) is not None and
                         a.id == "sat", what="the uplink to hear that sat is active")
        assert (await ask(bus, "start", "gate")).status == "accepted"
        p = await in_state(v, "gate", "live")
        # Over the satellite: sub, and why.
        assert p.key is not None and p.key.profile == "sub"
        assert "sat" in p.profile_reason, p.profile_reason
        await frames_at(whip, FRAMES, "frames pushed over the satellite")

        # The tunnel moves to 4G: main, on the same session (no new offer).
        links.activate("lte")
        await eventually(lambda: p.key is not None and p.key.profile == "main",
                         within=WITHIN_S, what="the push to move to main")
        before = await whip.frames()
        await frames_at(whip, before + FRAMES, "frames pushed on main")
        sessions = await whip.stats()
        assert len(sessions) == 1 and p.retries == 0 and p.state == "live", sessions
