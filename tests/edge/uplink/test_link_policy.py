"""The uplink follows the WAN link that carries the tunnel to the centre.

The links service is not run: its interface is `link/<id>/status` on the bus
(:class:`~tests.support.uplink.LinkFeed` publishes what it would, once a second
and at once on a change). The rest is real: a simulated camera with a main
(640x360) and a sub (448x256) stream, its camera service, `edge run uplink`, and
aiortc WHEP viewers (:class:`~edge.bench.whep_viewer.WhepViewer`) that decode
every frame, or Chromium playing the vehicle's page.

What is checked is states, sizes and counts: which stream a session is on (the
viewer's decoded frame size and the uplink's JSON), how many switches it made,
and that the viewer's peer connection was never renegotiated (one track, one
SSRC, the descriptions of the first exchange). Without any active link reported
the uplink behaves as before the links service existed: `auto` reads the
configured links (tests/edge/uplink/test_http.py::test_which_stream_auto_picks
and tests/edge/uplink/test_streams.py cover that rule), and open sessions stay
on their stream (below).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page, async_playwright

from edge.bench.whep_viewer import WhepViewer
from edge.bus import topics
from edge.bus.client import BusClient
from edge.bus.endpoints import Endpoints
from edge.bus.messages import UplinkSessions
from edge.media.wire import MediaFrame
from edge.uplink.fanout import Sink
from edge.uplink.track import PassthroughTrack
from tests.support import eventually, require
from tests.support.uplink import TOKEN, LinkFeed, Vehicle, vehicle

MAIN = (640, 360)
SUB = (448, 256)
CAMERA: dict[str, Any] = {"main": MAIN, "sub": SUB, "loop_seconds": 2.0}
KINDS = {"lte": "lte-private", "sat": "satellite"}
LINKS: list[dict[str, Any]] = [
    {"id": "lte", "name": "4G", "kind": "lte-private", "capacity_kbps": 20_000},
    # sub only over a satellite: the config's default for its kind
    {"id": "sat", "name": "Satellite", "kind": "satellite", "constrained": True,
     "capacity_kbps": 4_000}]
# Generous bounds that only keep a broken run from hanging: a shared 2-core machine
# decoding three viewers is slow, not wrong.
WITHIN_S = 30.0
CHROMIUM = Path("/usr/bin/chromium")


async def state_of(v: Vehicle) -> dict[str, Any]:
    async with v.http.get(f"{v.url}/api/state", headers=v.auth) as r:
        assert r.status == 200
        state: dict[str, Any] = await r.json()
        return state


async def session_of(v: Vehicle, viewer: WhepViewer) -> dict[str, Any]:
    assert viewer.location is not None
    sid = viewer.location.rsplit("/", 1)[1]
    sessions = (await state_of(v))["sessions"]
    found: list[dict[str, Any]] = [s for s in sessions if s["session_id"] == sid]
    assert found, f"session {sid} is not listed: {sessions}"
    return found[0]


async def session_where(v: Vehicle, viewer: WhepViewer,
                        check: Callable[[dict[str, Any]], bool], what: str) -> dict[str, Any]:
    """The viewer's session in /api/state, once it passes `check`."""
    last: dict[str, Any] = {}

    async def poll() -> bool:
        nonlocal last
        last = await session_of(v, viewer)
        return check(last)

    try:
        async with asyncio.timeout(WITHIN_S):
            while not await poll():
                await asyncio.sleep(0.1)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}: {last}") from None
    return last


def size(viewer: WhepViewer) -> tuple[int, int]:
    return viewer.stats.width, viewer.stats.height


async def inbound_ssrcs(viewer: WhepViewer) -> list[int]:
    """The SSRCs the viewer receives media from (its receiver's inbound-rtp stats)."""
    ssrcs: list[int] = []
    for receiver in viewer.pc.getReceivers():
        for stats in (await receiver.getStats()).values():
            if getattr(stats, "type", "") == "inbound-rtp":
                ssrcs.append(int(stats.ssrc))
    return ssrcs


class Watched:
    """A viewer, and what its peer connection had after the first offer/answer."""

    def __init__(self, v: Vehicle, query: str = "") -> None:
        self.viewer = WhepViewer(v.whep("gate", query), TOKEN, http=v.http)
        self.tracks: list[object] = []
        self.viewer.pc.on("track", self.tracks.append)
        self.local = self.remote = ""
        self.ssrcs: list[int] = []

    async def start(self) -> Watched:
        await self.viewer.start()
        pc = self.viewer.pc
        self.local, self.remote = pc.localDescription.sdp, pc.remoteDescription.sdp
        await self.viewer.wait_frames(10, timeout=WITHIN_S)
        self.ssrcs = await inbound_ssrcs(self.viewer)
        assert len(self.ssrcs) == 1, self.ssrcs
        return self

    async def plays_at(self, wanted: tuple[int, int]) -> None:
        """Decoded frames reach `wanted`'s size and keep coming (30 more: a second of the
        camera's); the peer connection is the one first negotiated."""
        viewer = self.viewer
        await eventually(lambda: size(viewer) == wanted, within=WITHIN_S,
                         what=f"the viewer's frames to be {wanted}, not {size(viewer)}")
        await viewer.wait_frames(viewer.stats.frames + 30, timeout=WITHIN_S)
        assert size(viewer) == wanted
        self.not_renegotiated()
        assert await inbound_ssrcs(viewer) == self.ssrcs  # the same RTP stream

    def not_renegotiated(self) -> None:
        pc = self.viewer.pc
        assert pc.signalingState == "stable" and pc.connectionState == "connected"
        assert pc.localDescription.sdp == self.local and pc.remoteDescription.sdp == self.remote
        assert len(self.tracks) == 1  # no new track either


@pytest.mark.timeout(120)
async def test_open_sessions_follow_the_active_link_in_band(
        tmp_path: Path, endpoints: Endpoints, bus: BusClient) -> None:
    async with vehicle(tmp_path, endpoints, bus, {"gate": CAMERA}, links=LINKS,
                       uplink={"upgrade_after_s": 1}) as v, \
            LinkFeed(bus, KINDS, active="lte") as feed:
        await wait_streams(v)
        await eventually(lambda: active_link(v) == "lte",
                         what="the uplink to hear that lte is active")

        # (a) lte carries the tunnel: auto gets main.
        first = await Watched(v).start()
        await first.plays_at(MAIN)
        s = await session_of(v, first.viewer)
        assert (s["requested"], s["profile"], s["switches"]) == ("auto", "main", 0)

        # The tunnel fails over to the satellite: the open session moves to sub, in-band.
        sub_from = first.viewer.stats.frames
        feed.activate("sat")
        await first.plays_at(SUB)
        assert first.viewer.stats.frames > sub_from
        s = await session_where(v, first.viewer, lambda s: s["switches"] == 1, "one switch")
        assert s["profile"] == "sub" and s["switching_to"] is None, s
        assert s["last_switch"] == "lte → sat: sat allows sub only", s
        assert s["stream_reason"] == "sat allows sub only", s
        # The commander sees it too: uplink/sessions says sub.
        await sessions_on_bus(bus, lambda ss: [x.profile for x in ss] == ["sub"])

        # (b) A new auto session while the satellite is active gets sub; one that asks for
        # main by name gets sub too, and is told why.
        second = await Watched(v).start()
        await second.plays_at(SUB)
        s2 = await session_of(v, second.viewer)
        assert (s2["profile"], s2["switches"], s2["stream_reason"]) == \
            ("sub", 0, "sat allows sub only"), s2
        third = await Watched(v, "?profile=main").start()
        await third.plays_at(SUB)
        s3 = await session_of(v, third.viewer)
        assert (s3["requested"], s3["profile"]) == ("main", "sub"), s3
        assert s3["stream_reason"] == "sat allows sub only", s3
        # Answered with a profile-level-id that covers both streams, so both may move up.
        # (x264 gives both streams one profile; the bound is the higher of their levels.)
        plids = {p: st["profile_level_id"]
                 for p, st in (await state_of(v))["cameras"][0]["streams"].items()}
        assert s2["profile_level_id"] == s3["profile_level_id"] == max(plids.values()), \
            (s2["profile_level_id"], plids)

        # Back on lte: after upgrade_after_s (1 s here) every session is on main again,
        # the two that started on sub included (their answer covered main's profile).
        feed.activate("lte")
        for watched in (first, second, third):
            await watched.plays_at(MAIN)
        counts = [(await session_of(v, w.viewer))["switches"] for w in (first, second, third)]
        assert counts == [2, 1, 1], counts
        assert len(v.uplink.manager.sessions) == 3
        for watched in (first, second, third):
            assert await watched.viewer.close() == 200
        await eventually(lambda: not v.uplink.manager.streams.fanouts,
                         what="every media subscription to end with its last viewer")


@pytest.mark.timeout(90)
async def test_a_link_that_flaps_does_not_flip_the_picture(
        tmp_path: Path, endpoints: Endpoints, bus: BusClient) -> None:
    """Down to sub at once; back to main only once due for upgrade_after_s (30 s here: far
    longer than this test waits, so the states below are not a race); and with no active
    link reported, a session stays where it is, as before the links service existed."""
    async with vehicle(tmp_path, endpoints, bus, {"gate": CAMERA}, links=LINKS,
                       uplink={"upgrade_after_s": 30}) as v:
        await wait_streams(v)
        # No links service: `auto` reads the config as before (lte unconstrained: main).
        watched = await Watched(v).start()
        await watched.plays_at(MAIN)
        s = await session_of(v, watched.viewer)
        assert (s["profile"], s["stream_reason"], s["switches"]) == ("main", "", 0), s
        assert (await state_of(v))["active_link"] is None

        async with LinkFeed(bus, KINDS, active="sat") as feed:
            await watched.plays_at(SUB)
            # lte is back: due for main, but waiting out upgrade_after_s on sub.
            feed.activate("lte")
            s = await session_where(v, watched.viewer, lambda s: s["switching_to"] == "main",
                                    "the move up to main to be due")
            assert (s["profile"], s["switches"]) == ("sub", 1), s
            assert s["upgrade_in_s"] is not None and s["upgrade_in_s"] > 0, s
            # It flaps back to the satellite before then: no switch at all.
            feed.activate("sat")
            s = await session_where(v, watched.viewer, lambda s: s["switching_to"] is None,
                                    "the move up to be called off")
            assert (s["profile"], s["switches"]) == ("sub", 1), s
            # The links service says no link carries the tunnel: nothing to follow, the
            # session stays on sub (and `auto` for a new one reads the config again).
            feed.activate(None)
            await eventually(lambda: active_link(v) is None,
                             what="the uplink to hear that no link is active")
            s = await session_of(v, watched.viewer)
            assert (s["profile"], s["switches"], s["switching_to"]) == ("sub", 1, None), s
            assert size(watched.viewer) == SUB
        assert await watched.viewer.close() == 200


def active_link(v: Vehicle) -> str | None:
    link = v.uplink.state.active_link()
    return link.id if link is not None else None


def unit(seq: int, *, epoch: int, received_ns: int, gop: int = 30) -> MediaFrame:
    return MediaFrame(epoch, seq, seq % gop == 0, seq * 3000, None, Fraction(1, 90000),
                      "h264", received_ns, b"\x00\x00\x00\x01" + bytes([seq % 256]))


@pytest.mark.timeout(30)
async def test_a_switch_keeps_the_track_and_its_timestamps_continuous() -> None:
    """The track's side of an in-band switch, with real sinks and no network: the old
    stream plays until the new one has its first unit (a keyframe), then only the new one;
    the RTP timestamps never step back or jump."""
    now = time.time_ns()
    old, new = Sink(), Sink()
    track = PassthroughTrack(old)
    switched: list[tuple[Sink, Sink]] = []
    old.offer(unit(30, epoch=1, received_ns=now))
    old.offer(unit(31, epoch=1, received_ns=now + 33_000_000))
    assert (await track.recv()).pts == 0
    track.switch_to(new, lambda a, b: switched.append((a, b)))
    assert (await track.recv()).pts == 3000  # nothing from the new stream yet: the old goes on
    # Neither has a unit: the track waits on both, and the new stream's first one wins.
    waiting = asyncio.ensure_future(track.recv())
    for _ in range(5):  # let it run until it waits
        await asyncio.sleep(0)
    assert not waiting.done()
    old_left = unit(32, epoch=1, received_ns=now + 66_000_000)
    new.offer(unit(5, epoch=2, received_ns=now - 10**9), catchup=True)  # not a keyframe
    new.offer(unit(60, epoch=2, received_ns=now - 10**9), catchup=True)  # the GOP cache
    new.offer(unit(61, epoch=2, received_ns=now - 10**9 + 33_000_000), catchup=True)
    old.offer(old_left)
    first = await asyncio.wait_for(waiting, 5)
    assert switched == [(old, new)] and track.sink is new and track.switching is None
    # The new stream's cached GOP as one instant, then its own pts spacing; nothing of the
    # old stream after the switch (its sink is the session's to close).
    new.offer(unit(62, epoch=2, received_ns=now + 100_000_000))
    stamps = [first.pts] + [(await track.recv()).pts for _ in range(2)]
    assert stamps == [3001, 3002, 3002 + 3000]
    assert len(old) == 1 and track.keyframes == 2  # 30 and 60
    track.stop()
    assert new.closed


async def wait_streams(v: Vehicle) -> None:
    await v.wait_live("gate")
    cam = v.uplink.state.camera("gate")
    assert cam is not None
    await eventually(lambda: {"main", "sub"} <= set(cam.streams), within=WITHIN_S,
                     what="both of the camera's streams to be announced")


async def sessions_on_bus(bus: BusClient, check: Callable[[list[Any]], bool]) -> None:
    sub = bus.subscribe(topics.UPLINK_SESSIONS)
    try:
        async with asyncio.timeout(WITHIN_S):
            async for env in sub:
                if isinstance(env.message, UplinkSessions) and check(env.message.sessions):
                    return
    finally:
        sub.close()


CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-quic"]


async def page_stats(page: Page) -> dict[str, Any]:
    value: dict[str, Any] = await page.evaluate("window.edgeViewer.stats || {}")
    return value


@pytest.fixture
def chromium_installed() -> None:
    require(CHROMIUM.exists(), f"Debian's chromium is not installed ({CHROMIUM})")


@pytest.mark.timeout(120)
@pytest.mark.usefixtures("chromium_installed")
async def test_chromium_keeps_playing_across_a_switch_to_sub(
        tmp_path: Path, endpoints: Endpoints, bus: BusClient) -> None:
    async with vehicle(tmp_path, endpoints, bus, {"gate": CAMERA}, links=LINKS,
                       uplink={"upgrade_after_s": 1}) as v, \
            LinkFeed(bus, KINDS, active="lte") as feed, async_playwright() as pw:
        await wait_streams(v)
        browser = await pw.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=str(CHROMIUM),
            headless=True, args=CHROMIUM_ARGS, viewport={"width": 1280, "height": 900})
        try:
            page = await browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            await page.goto(v.url + "/")
            await page.fill("#token", TOKEN)
            await page.click("#token-ok")
            await page.wait_for_selector('.camera[data-camera="gate"] .badge.live')
            await page.click('.camera[data-camera="gate"]')
            await page.wait_for_function(
                "window.edgeViewer.stats && window.edgeViewer.stats.framesDecoded > 30 && "
                f"window.edgeViewer.stats.width === {MAIN[0]}", timeout=WITHIN_S * 1000)
            location = await page.evaluate("window.edgeViewer.playing.location")

            feed.activate("sat")
            # The page's link badges say which link carries the tunnel now, with its figures.
            await page.wait_for_function(
                "[...document.querySelectorAll('#links .badge')].some("
                "b => b.textContent.startsWith('● Satellite: up 600 ms loss 0.0%'))",
                timeout=WITHIN_S * 1000)
            await page.wait_for_function(f"window.edgeViewer.stats.width === {SUB[0]}",
                                         timeout=WITHIN_S * 1000)
            # Frames decoded keep rising on the new stream: 45 more (a count; the timeout
            # only guards a hang).
            after = (await page_stats(page))["framesDecoded"]
            await page.wait_for_function(
                f"window.edgeViewer.stats.framesDecoded >= {after + 45}",
                timeout=WITHIN_S * 1000)
            s = await page_stats(page)
            assert (s["width"], s["height"]) == SUB, s
            # The same session: the page neither lost it nor made a new one.
            assert await page.evaluate("window.edgeViewer.playing.location") == location
            sessions = list(v.uplink.manager.sessions.values())
            assert [(x.key.profile, x.switches) for x in sessions] == [("sub", 1)]
            assert not errors, errors
        finally:
            await browser.close()
