"""A real browser plays the vehicle's cameras: Debian's Chromium, headless, via Playwright.

The viewer page is the vehicle's own; the browser makes its own offer (VP8
first, several H.264 profiles, mDNS candidates) and must decode what the
uplink sends: frames decoded, per getStats(), keep rising. One camera sends
constrained baseline, the other High profile.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page, async_playwright

from edge.bus import topics
from edge.bus.client import BusClient
from edge.bus.endpoints import Endpoints
from edge.bus.messages import DroneStatus, DroneTelemetry, DroneVideo
from tests.support import eventually, require
from tests.support.uplink import SMALL, TOKEN, vehicle

pytestmark = pytest.mark.timeout(120)

CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(autouse=True)
def _chromium_installed() -> None:
    require(CHROMIUM.exists(), f"Debian's chromium is not installed ({CHROMIUM})")

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-quic"]


async def stats(page: Page) -> dict[str, Any]:
    value: dict[str, Any] = await page.evaluate("window.edgeViewer.stats || {}")
    return value


async def play_and_check(page: Page, camera: str) -> dict[str, Any]:
    await page.click(f'.camera[data-camera="{camera}"]')
    await page.wait_for_function(
        f"window.edgeViewer.playing && window.edgeViewer.playing.camera === '{camera}' && "
        "window.edgeViewer.stats && window.edgeViewer.stats.framesDecoded > 0", timeout=15_000)
    before = (await stats(page))["framesDecoded"]
    # Frames keep being decoded: 45 more (a count; the timeout only guards a hang).
    await page.wait_for_function(
        f"window.edgeViewer.stats.framesDecoded >= {before + 45}", timeout=30_000)
    # The page times its first frame from the POST; how soon is a figure for a benchmark.
    first_ms = await page.evaluate("window.edgeViewer.playing.firstFrameMs")
    assert first_ms is not None and first_ms > 0, f"first frame {first_ms} ms after POST"
    s = await stats(page)
    assert s["codec"].startswith("video/H264"), s
    assert (s["width"], s["height"]) == (640, 360)
    return s


async def test_chromium_plays_baseline_and_high_profile_cameras(
        tmp_path: Path, endpoints: Endpoints, bus: BusClient) -> None:
    # "tower" is a drone's gimbal camera, High profile: the camera service plays
    # whatever RTSP URL the drone announces, and the page shows the drone beside it.
    cams = {"gate": SMALL, "tower": {**SMALL, "profile": "high"}}
    drone = {"tower": {"main": None, "drone": "alpha-1"}}
    async with vehicle(tmp_path, endpoints, bus, cams, camera_extra=drone) as v, \
            async_playwright() as pw:
        bus.publish(topics.drone_video("alpha-1"), DroneVideo(
            drone_id="alpha-1", uri=v.cameras["tower"].url("main")))
        bus.publish(topics.drone_status("alpha-1"), DroneStatus(
            drone_id="alpha-1", state="live", mode="GUIDED", armed=True, link_quality_pct=97))
        bus.publish(topics.drone_telemetry("alpha-1"), DroneTelemetry(
            drone_id="alpha-1", alt_rel_m=42.5, groundspeed_mps=6.2, battery_pct=81,
            lat=30.5935, lon=114.306, heading_deg=270))
        await v.wait_live("gate")
        await v.wait_live("tower")
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
            # Every camera with its state and a thumbnail (published every 2 s).
            for cam in cams:
                await page.wait_for_selector(f'.camera[data-camera="{cam}"] .badge.live')
                await page.wait_for_selector(f'.camera[data-camera="{cam}"] img',
                                             timeout=30_000)

            await play_and_check(page, "gate")
            session = next(iter(v.uplink.manager.sessions.values()))
            assert session.profile_level_id.startswith("42")

            await play_and_check(page, "tower")
            assert await page.is_visible("#telemetry")
            assert await page.text_content("#t-mode") == "GUIDED (armed)"
            assert await page.text_content("#t-alt") == "42.5 m"
            assert await page.text_content("#t-battery") == "81 %"
            sessions = list(v.uplink.manager.sessions.values())
            assert [s.camera_id for s in sessions] == ["tower"]  # the page closed gate's
            assert sessions[0].profile_level_id.startswith("64")  # the truth, from the SPS
            await page.wait_for_selector("#sessions tbody tr")
            shot = tmp_path / "viewer.png"
            await page.screenshot(path=str(shot))
            if os.environ.get("EDGE_SCREENSHOT_DIR"):
                shutil.copy(shot, Path(os.environ["EDGE_SCREENSHOT_DIR"]) / "viewer.png")

            await page.click("#stop")
            await page.wait_for_function("!window.edgeViewer.playing")
            await eventually(lambda: not v.uplink.manager.sessions, within=30,
                             what="the page's session closed at the uplink")
            assert not errors, errors
        finally:
            await browser.close()
