"""WHEP end to end: simulated camera -> camera service -> uplink -> aiortc WHEP viewers.

The viewer is :class:`edge.bench.whep_viewer.WhepViewer`, plain aiortc with none
of the server's code. Sessions are checked where the commander sees them: on
the bus (`uplink/sessions`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from edge.bench.whep_viewer import WhepViewer
from edge.bus import topics
from edge.bus.client import BusClient
from edge.bus.endpoints import Endpoints
from edge.bus.messages import UplinkSessions, ViewerSession
from tests.support import eventually, standing_still
from tests.support.uplink import SMALL, TOKEN, Vehicle, offer_sdp, vehicle

pytestmark = pytest.mark.timeout(90)


async def sessions_where(bus: BusClient, check: Callable[[list[ViewerSession]], bool],
                         timeout: float = 30.0) -> list[ViewerSession]:
    """The first `uplink/sessions` message whose sessions pass `check`."""
    sub = bus.subscribe(topics.UPLINK_SESSIONS)
    try:
        async with asyncio.timeout(timeout):
            async for env in sub:
                if isinstance(env.message, UplinkSessions) and check(env.message.sessions):
                    return env.message.sessions
    finally:
        sub.close()
    raise AssertionError("unreachable")


async def api_state(v: Vehicle) -> dict[str, Any]:
    async with v.http.get(f"{v.url}/api/state", headers=v.auth) as r:
        assert r.status == 200
        state: dict[str, Any] = await r.json()
        return state


async def test_a_viewer_plays_and_the_commander_sees_it(
        tmp_path: Path, endpoints: Endpoints, bus: BusClient) -> None:
    async with vehicle(tmp_path, endpoints, bus, {"gate": SMALL}) as v:
        await v.wait_live("gate")
        viewer = WhepViewer(v.whep("gate"), TOKEN, http=v.http)
        await viewer.start()
        assert viewer.response_headers["Content-Type"].startswith("application/sdp")
        assert viewer.location and viewer.location.startswith(f"{v.url}/whep/gate/")
        # Pinned to H.264, with the camera's own profile-level-id (x264 baseline: 42c0xx).
        assert "H264/90000" in viewer.answer and "VP8" not in viewer.answer
        assert "profile-level-id=42c0" in viewer.answer
        await viewer.wait_frames(45, timeout=30)
        assert (viewer.stats.width, viewer.stats.height) == (640, 360)
        # Timed from the POST; how soon is a figure: `edge bench latency`'s first_frame_ms.
        first = viewer.stats.first_frame_ms
        assert first is not None and first > 0

        # kbps > 0: the commander sees the session carry video (how much is the camera's).
        sessions = await sessions_where(v.bus, lambda s: bool(s) and s[0].kbps > 0
                                        and s[0].rtt_ms is not None and s[0].state == "live")
        s = sessions[0]
        assert (s.camera_id, s.profile, s.transcoded) == ("gate", "main", False)
        assert s.viewer.startswith("127.0.0.1") and s.packets_lost == 0
        assert s.session_id == viewer.location.rsplit("/", 1)[1]
        state = await api_state(v)
        assert state["sessions"][0]["nack"]["window_s"] == 2.0  # worst_rtt_ms 1000 by default

        assert await viewer.close() == 200
        await sessions_where(v.bus, lambda s: not s)
        assert not v.uplink.manager.streams.fanouts, \
            "the media subscription outlived its last viewer"
        assert (await api_state(v))["sessions"] == []


async def test_a_stalled_viewer_does_not_slow_another(
        tmp_path: Path, endpoints: Endpoints, bus: BusClient) -> None:
    async with vehicle(tmp_path, endpoints, bus, {"gate": SMALL},
                       uplink={"max_sessions": 2}) as v:
        await v.wait_live("gate")
        # A viewer that never takes a frame: its offer is valid but nobody is
        # behind its ICE credentials, so its sender never starts.
        async with v.http.post(v.whep("gate"), data=offer_sdp(),
                               headers={**v.auth, "Content-Type": "application/sdp"}) as r:
            assert r.status == 201
        stalled = next(iter(v.uplink.manager.sessions.values()))
        viewer = WhepViewer(v.whep("gate"), TOKEN, http=v.http)
        await viewer.start()
        await viewer.wait_frames(10, timeout=30)
        # The stalled one falls behind again and again, and is resynchronised each time ...
        sink = stalled.sink
        assert sink is not None
        await eventually(lambda: sink.stats.resyncs >= 2, within=30,
                         what="the stalled viewer resynchronised twice")
        assert len(sink) <= sink.live_backlog + 60
        # ... while the playing one keeps receiving: 30 more frames (a second of the camera's;
        # a count, not a rate: a viewer held up by the stalled one would get none).
        await viewer.wait_frames(viewer.stats.frames + 30, timeout=30)
        assert len(v.uplink.manager.streams.fanouts) == 1  # one media subscription for both

        # Both sessions taken: a third viewer is told so.
        async with v.http.post(v.whep("gate"), data=offer_sdp(),
                               headers={**v.auth, "Content-Type": "application/sdp"}) as r:
            assert r.status == 503 and "all 2 viewer sessions are in use" in await r.text()
        async with v.http.patch(viewer.location or "", headers=v.auth) as r:
            assert r.status == 405
        await viewer.close()


async def test_camera_down_mid_session_then_back(
        tmp_path: Path, endpoints: Endpoints, bus: BusClient) -> None:
    async with vehicle(tmp_path, endpoints, bus, {"gate": SMALL}) as v:
        await v.wait_live("gate")
        viewer = WhepViewer(v.whep("gate"), TOKEN, http=v.http)
        await viewer.start()
        await viewer.wait_frames(15, timeout=30)

        await v.cameras["gate"].stop()
        down = await sessions_where(v.bus, lambda s: bool(s) and s[0].state == "waiting")
        assert "camera gate is down" in down[0].detail
        # Frames stop (nothing stale is played meanwhile): the count stands still over looks
        # half a second apart; a frame in flight may still land before it does.
        await eventually(standing_still(lambda: viewer.stats.frames), within=30, every=0.5,
                         what="the viewer's frames to stop while the camera is down")
        frozen = viewer.stats.frames

        await v.cameras["gate"].start()
        await viewer.wait_frames(frozen + 30, timeout=30)  # the same session plays on
        await sessions_where(v.bus, lambda s: bool(s) and s[0].state == "live")
        assert len(v.uplink.manager.sessions) == 1

        # Down again, and the viewer leaves meanwhile: closed cleanly, nothing left.
        await v.cameras["gate"].stop()
        await sessions_where(v.bus, lambda s: bool(s) and s[0].state == "waiting")
        assert await viewer.close() == 200
        await sessions_where(v.bus, lambda s: not s)
        assert not v.uplink.manager.streams.fanouts
