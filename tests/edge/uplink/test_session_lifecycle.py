"""How WHEP sessions end without the viewer's DELETE: never connected, the camera's stream
changed under them, the uplink stopping.

Real pieces throughout: a simulated camera, the camera service, the uplink, and
aiortc viewers (:class:`edge.bench.whep_viewer.WhepViewer`) or a bare offer with
nobody behind its ICE credentials.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from edge.bench.whep_viewer import WhepViewer
from edge.bus import topics
from edge.bus.client import BusClient
from edge.bus.endpoints import Endpoints
from edge.uplink import session as session_mod
from edge.uplink.session import Session
from tests.support.uplink import SMALL, TOKEN, Vehicle, offer_sdp, vehicle

pytestmark = pytest.mark.timeout(90)


async def until(predicate: Callable[[], object], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.05)


async def playing(v: Vehicle, camera: str = "gate") -> tuple[WhepViewer, Session]:
    """A connected viewer receiving frames, and its session at the uplink."""
    viewer = WhepViewer(v.whep(camera), TOKEN, http=v.http)
    await viewer.start()
    await viewer.wait_frames(5, timeout=10)
    assert viewer.location is not None
    session = v.uplink.manager.sessions[viewer.location.rsplit("/", 1)[1]]
    await until(lambda: session.connection_state == "connected", "the session connected")
    return viewer, session


async def test_a_session_that_never_connects_is_closed(
        tmp_path: Path, endpoints: Endpoints, bus: BusClient,
        monkeypatch: pytest.MonkeyPatch) -> None:
    timeout = 1.0  # 30 s in production
    monkeypatch.setattr(session_mod, "CONNECT_TIMEOUT_S", timeout)
    async with vehicle(tmp_path, endpoints, bus, {"gate": SMALL},
                       uplink={"max_sessions": 2}) as v:
        await v.wait_live("gate")
        viewer, live = await playing(v)
        # A valid offer, but nobody is behind its ICE credentials: it never connects.
        async with v.http.post(v.whep("gate"), data=offer_sdp(),
                               headers={**v.auth, "Content-Type": "application/sdp"}) as r:
            assert r.status == 201
            dead_id = r.headers["Location"].rsplit("/", 1)[1]
        dead = v.uplink.manager.sessions[dead_id]
        # The housekeeping round is once a second: a few rounds past the timeout.
        await until(lambda: dead.closed, "the unconnected session closed", timeout=timeout + 10)
        assert "not connected within" in dead.close_reason
        assert dead_id not in v.uplink.manager.sessions
        assert dead.pc is not None and dead.pc.connectionState == "closed"
        # The connected viewer, older than the timeout too, plays on.
        frames = viewer.stats.frames
        await viewer.wait_frames(frames + 10, timeout=10)
        assert not live.closed and live.id in v.uplink.manager.sessions
        assert await viewer.close() == 200


async def test_a_session_closes_when_its_stream_changes_codec_or_profile(
        tmp_path: Path, endpoints: Endpoints, bus: BusClient) -> None:
    async with vehicle(tmp_path, endpoints, bus, {"gate": SMALL}) as v:
        await v.wait_live("gate")
        cam = v.uplink.state.camera("gate")
        assert cam is not None
        real = cam.streams["main"]
        assert real.codec == "h264" and real.profile_level_id
        topic = topics.cam_stream("gate", "main")

        # The same stream announced again (a camera service restart does that): nothing ends.
        viewer, session = await playing(v)
        bus.publish(topic, dataclasses.replace(real))
        await until(lambda: cam.streams["main"] is not real, "the re-announcement")
        frames = viewer.stats.frames
        await viewer.wait_frames(frames + 10, timeout=10)
        assert not session.closed

        # Another H.264 profile (High instead of the camera's baseline): the answer the
        # viewer holds no longer describes the stream.
        high = "640028" if real.profile_level_id.lower() != "640028" else "4d0028"
        bus.publish(topic, dataclasses.replace(real, profile_level_id=high))
        await until(lambda: session.closed, "the session closed on a new profile")
        assert high in session.close_reason and session.id not in v.uplink.manager.sessions
        await viewer.close()

        # Back to the real stream, a new viewer; then the camera turns to H.265.
        bus.publish(topic, dataclasses.replace(real))
        await until(lambda: cam.streams["main"].profile_level_id == real.profile_level_id,
                    "the real stream again")
        viewer, session = await playing(v)
        bus.publish(topic, dataclasses.replace(real, codec="h265", profile_level_id=""))
        await until(lambda: session.closed, "the session closed on a new codec")
        assert "h265" in session.close_reason and not v.uplink.manager.sessions
        await viewer.close()


async def test_the_uplink_closes_every_peer_connection_when_it_stops(
        tmp_path: Path, endpoints: Endpoints, bus: BusClient) -> None:
    viewers: list[WhepViewer] = []
    async with vehicle(tmp_path, endpoints, bus, {"gate": SMALL},
                       uplink={"max_sessions": 3}) as v:
        await v.wait_live("gate")
        sessions: list[Session] = []
        for _ in range(2):
            viewer, session = await playing(v)
            viewers.append(viewer)
            sessions.append(session)
        async with v.http.post(v.whep("gate"), data=offer_sdp(),
                               headers={**v.auth, "Content-Type": "application/sdp"}) as r:
            assert r.status == 201  # and one that is still connecting
        sessions += [s for s in v.uplink.manager.sessions.values() if s not in sessions]
        manager = v.uplink.manager
        assert len(sessions) == 3
    # The uplink has stopped (leaving the block stops it as SIGTERM would).
    try:
        assert not manager.sessions and not manager.streams.fanouts
        for s in sessions:
            assert s.closed and s.close_reason == "the uplink stopped"
            assert s.pc is not None and s.pc.connectionState == "closed"
        # The viewers learn it from the other end: their connections end too.
        # They hear it from the closing end within moments; 20 s is for a loaded machine.
        await until(lambda: all(w.pc.connectionState in ("closed", "failed") for w in viewers),
                    "the viewers' connections ended", timeout=20)
    finally:
        for viewer in viewers:
            await viewer.close(delete=False)
