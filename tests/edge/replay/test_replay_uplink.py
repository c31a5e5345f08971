"""The replay's WHEP uplink: `edge replay SESSION --uplink` runs the real uplink on the
replay's bus and media plane; a WHEP viewer plays the replayed camera, and a seek (a
`replay.command` over the replay bus) changes the decoded picture's burnt-in time to the
target (within one GOP).

The session is recorded from a live simulated camera, whose pictures carry their encode
time as blocks (`decode_timestamp_blocks`). Two viewers: the aiortc one
(`edge.bench.whep_viewer`, every decoded frame read), and Debian's Chromium on the
uplink's own viewer page (the picture on its <video> drawn to a canvas and read).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import av
import numpy as np
import pytest
from playwright.async_api import Page, async_playwright

from drivers.sim.camera.timestamp_blocks import decode_timestamp_blocks
from edge.bench.whep_viewer import WhepRefused, WhepViewer
from edge.bus import topics
from edge.bus.client import BusClient
from edge.bus.messages import ReplayCommand, ReplayStatus, Reply
from tests.support import REPO, eventually, free_port, require, run_edge, standing_still
from tests.support.drill import Drill, endpoints_in, shared_drill
from tests.support.replay import ReplayAnnounced, read_announcement

pytestmark = pytest.mark.timeout(240)

# Functional bounds only (a loaded 2-core machine is slow, not wrong).
WITHIN_S = 45.0
GOP_MS = 1000  # the simulated camera's: a keyframe a second
# A unit is filed under the time the camera service received it, a little after the
# camera burnt its encode time in (encoding, RTP, the ingest): allowance for that.
SLACK_MS = 500


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Drill]:
    yield shared_drill(tmp_path_factory)


class Stamps:
    """(monotonic arrival, burnt-in ms) of every decoded frame whose code is readable."""

    def __init__(self) -> None:
        self.seen: list[tuple[float, int]] = []
        self.unreadable = 0

    def __call__(self, frame: av.VideoFrame) -> None:
        plane = frame.planes[0]  # luma: the grey picture, no conversion needed
        grey = np.frombuffer(memoryview(plane), np.uint8).reshape(frame.height, plane.line_size)
        ms = decode_timestamp_blocks(grey[:, :frame.width])
        if ms is None:
            self.unreadable += 1
        else:
            self.seen.append((time.monotonic(), ms))

    def since(self, t: float) -> list[int]:
        return [ms for at, ms in self.seen if at > t]


async def command(bus: BusClient, **fields: object) -> ReplayStatus:
    reply = (await bus.request(topics.REPLAY_SERVICE,
                               ReplayCommand(**fields))).message  # type: ignore[arg-type]
    assert isinstance(reply, Reply) and reply.status == "accepted", reply
    return ReplayStatus.from_body(reply.data)


async def seek_and_read(bus: BusClient, stamps: Stamps, target_ns: int) -> list[int]:
    """Seek the paused replay; the burnt-in times of the frames decoded after it."""
    await eventually(standing_still(lambda: len(stamps.seen)), within=WITHIN_S,
                     what="the paused replay's frames to stop")
    t = time.monotonic()
    await command(bus, action="seek", time_ns=target_ns)
    await eventually(lambda: stamps.since(t), within=WITHIN_S, what="a frame after the seek")
    # The fast-forward to the target is one burst: wait for all of it.
    await eventually(standing_still(lambda: len(stamps.since(t))), within=WITHIN_S,
                     what="the seek's frames to stop")
    return stamps.since(t)


def assert_at(stamps: list[int], target_ns: int) -> None:
    target_ms = target_ns // 1_000_000
    # From the keyframe at or before the target up to the target, nothing else.
    assert all(target_ms - GOP_MS - SLACK_MS <= ms <= target_ms + SLACK_MS for ms in stamps), \
        [ms - target_ms for ms in stamps]
    assert max(stamps) >= target_ms - SLACK_MS, [ms - target_ms for ms in stamps]


@asynccontextmanager
async def replay_with_uplink(recorded: Drill
                             ) -> AsyncIterator[tuple[ReplayAnnounced, BusClient]]:
    """`edge replay SESSION --uplink` (paused at the start), and a client on its bus; the
    command must exit 0 when stopped."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "edge", "replay", str(recorded.session_id), "--config",
        str(recorded.config), "--headless", "--paused",
        "--uplink", f"127.0.0.1:{free_port()}", cwd=REPO, env=env,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    bus: BusClient | None = None
    try:
        assert proc.stderr is not None
        said = await read_announcement(proc.stderr, uplink=True, within=WITHIN_S)
        assert said.uplink_url is not None and said.token_file is not None
        assert said.token_file.parent == said.runtime_dir  # in the private runtime dir
        assert said.token_file.stat().st_mode & 0o077 == 0
        bus = BusClient(endpoints_in(said.runtime_dir), source="test")
        yield said, bus
    finally:
        if bus is not None:
            await bus.close()
        if proc.returncode is None:
            proc.terminate()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.communicate(), 20)
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0


async def test_seek_moves_the_whep_viewers_picture(recorded: Drill) -> None:
    viewer: WhepViewer | None = None
    async with replay_with_uplink(recorded) as (said, bus):
        try:
            assert said.uplink_url is not None and said.token_file is not None
            await command(bus, action="play")
            stamps = Stamps()
            token = said.token_file.read_text().strip()
            async with aiohttp.ClientSession() as http:
                auth = {"Authorization": f"Bearer {token}"}
                async with http.post(f"{said.uplink_url}/api/replay", headers=auth,
                                     json={"action": "rewind"}) as r:
                    assert r.status == 400 and "action must be one of" in await r.text()
                async with http.post(f"{said.uplink_url}/api/replay", headers=auth,
                                     json={"action": "speed", "speed": 99}) as r:
                    assert r.status == 409, await r.text()  # the replay's own refusal
                async with http.post(f"{said.uplink_url}/api/replay", headers=auth,
                                     json={"action": "speed", "speed": 1}) as r:
                    answer = await r.json()
                    assert r.status == 200 and answer["replay"]["speed"] == 1, answer

            refused: list[str] = []

            async def connected() -> WhepViewer | None:
                v = WhepViewer(f"{said.uplink_url}/whep/gate", token, on_frame=stamps,
                               marker_frames=True)
                try:
                    await v.start()
                except WhepRefused as e:  # 409 until the uplink has heard the replayed camera
                    refused.append(str(e))
                    await v.close()
                    return None
                return v

            deadline = time.monotonic() + WITHIN_S
            while viewer is None and time.monotonic() < deadline:
                viewer = await connected()
                if viewer is None:
                    await asyncio.sleep(0.5)
            assert viewer is not None, f"the replay uplink never admitted a viewer: {refused[-3:]}"
            await viewer.wait_frames(10, WITHIN_S)
            assert stamps.seen, f"no readable time in {viewer.stats.frames} frames"
            # Playing from the session's start: the pictures are the recorded ones.
            first = stamps.seen[0][1]
            assert recorded.start_ns // 1_000_000 - 2 * GOP_MS - SLACK_MS <= first \
                <= recorded.end_ns // 1_000_000, first - recorded.start_ns // 1_000_000

            await command(bus, action="pause")
            forward = recorded.start_ns + (recorded.end_ns - recorded.start_ns) * 3 // 4
            assert_at(await seek_and_read(bus, stamps, forward), forward)
            back = recorded.start_ns + (recorded.end_ns - recorded.start_ns) // 4
            assert_at(await seek_and_read(bus, stamps, back), back)
        finally:
            if viewer is not None:
                await viewer.close()


CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-quic"]
# The picture on the page's <video>: the rows of the time code, as grey levels.
READ_PICTURE = """() => {
  const v = document.getElementById("video");
  if (!v || !v.videoWidth) return null;
  const c = document.createElement("canvas");
  c.width = v.videoWidth; c.height = v.videoHeight;
  const g = c.getContext("2d", { willReadFrequently: true });
  g.drawImage(v, 0, 0);
  const y0 = (Math.floor(v.videoHeight / 16) - 3) * 16;
  const d = g.getImageData(0, y0, v.videoWidth, 32).data;
  const grey = new Array(v.videoWidth * 32);
  for (let i = 0; i < grey.length; i++) grey[i] = (d[4 * i] + d[4 * i + 1] + d[4 * i + 2]) / 3;
  return { width: v.videoWidth, height: v.videoHeight, y0: y0, grey: grey };
}"""


async def picture_ms(page: Page) -> int | None:
    """The burnt-in time of the picture the page shows (None when unreadable)."""
    got: dict[str, Any] | None = await page.evaluate(READ_PICTURE)
    if got is None:
        return None
    frame = np.zeros((got["height"], got["width"]), np.float32)
    frame[got["y0"]:got["y0"] + 32] = np.asarray(got["grey"], np.float32).reshape(32, -1)
    return decode_timestamp_blocks(frame)


async def decoded(page: Page) -> int:
    n: int = await page.evaluate(
        "(window.edgeViewer.stats && window.edgeViewer.stats.framesDecoded) || 0")
    return n


@pytest.fixture
def chromium() -> Path:
    require(CHROMIUM.exists(), f"Debian's chromium is not installed ({CHROMIUM})")
    return CHROMIUM


async def test_chromium_follows_a_seek(recorded: Drill, tmp_path: Path,
                                       chromium: Path) -> None:
    async with replay_with_uplink(recorded) as (said, bus), async_playwright() as pw:
        assert said.uplink_url is not None and said.token_file is not None
        browser = await pw.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=str(chromium),
            headless=True, args=CHROMIUM_ARGS, viewport={"width": 1280, "height": 900})
        try:
            page = await browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            await page.goto(said.uplink_url + "/")
            await page.fill("#token", said.token_file.read_text().strip())
            await page.click("#token-ok")
            # Played once the page is up, at half speed: the 8 s session lasts while
            # the browser connects.
            await command(bus, action="speed", speed=0.5)
            await command(bus, action="play")
            # Live, though recorded long ago: the uplink ages statuses by the replay clock.
            await page.wait_for_selector('.camera[data-camera="gate"] .badge.live',
                                         timeout=30_000)
            await page.click('.camera[data-camera="gate"]')
            await page.wait_for_function(
                "window.edgeViewer.stats && window.edgeViewer.stats.framesDecoded > 10",
                timeout=30_000)
            assert await picture_ms(page) is not None, "no readable time on the page"
            # From here the page drives the replay, with its own replay bar (through the
            # uplink to the replay vehicle, as the dashboard's keys do).
            await page.wait_for_selector("#replay:not([hidden])", timeout=10_000)
            assert "REPLAY" in await page.inner_text("#replay-clock")
            await page.click("#replay-play")  # playing: the button pauses
            # The replay paused, as the page hears it back (its status, over the uplink).
            await page.wait_for_function(
                "document.getElementById('replay-clock').textContent.endsWith('paused')",
                timeout=WITHIN_S * 1000)
            span = recorded.end_ns - recorded.start_ns
            for per_mille in (750, 250):
                target = recorded.start_ns + span * per_mille // 1000
                before = await decoded(page)
                await asyncio.sleep(1.0)
                while (now := await decoded(page)) != before:  # paused: decoding stops
                    before = now
                    await asyncio.sleep(1.0)
                await page.eval_on_selector(
                    "#replay-seek", "(el, v) => { el.value = v; "
                    "el.dispatchEvent(new Event('change')); }", str(per_mille))
                deadline = time.monotonic() + WITHIN_S
                while await decoded(page) == before and time.monotonic() < deadline:
                    await asyncio.sleep(0.2)
                assert await decoded(page) > before, "no frame decoded after the seek"
                # The burst to the target is played out on its RTP times: let it end.
                while True:
                    n = await decoded(page)
                    await asyncio.sleep(1.5)
                    if await decoded(page) == n or time.monotonic() > deadline:
                        break
                ms = await picture_ms(page)
                assert ms is not None, "the picture after the seek has no readable time"
                target_ms = target // 1_000_000
                assert target_ms - GOP_MS - SLACK_MS <= ms <= target_ms + SLACK_MS, \
                    ms - target_ms
            assert not errors, errors
        finally:
            await browser.close()


async def test_a_bad_uplink_address_is_one_line(recorded: Drill, tmp_path: Path) -> None:
    code, out, err = await run_edge("replay", str(recorded.session_id), "--config",
                                    str(recorded.config), "--headless", "--seconds", "1",
                                    "--uplink", "nowhere:port")
    assert code == 2, (out, err)
    assert err.startswith("edge: --uplink 'nowhere:port'") and err.count("\n") == 1, err
    assert "Traceback" not in err
