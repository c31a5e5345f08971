"""The centre page in a real browser (Debian's Chromium, headless, via Playwright): two
vehicles side by side, each a real one in miniature (bus, camera, uplink, sync, its NATS
leaf node) sourced by the centre's NATS. The page shows both, updates live, marks one out
of contact when its leaf link is cut, and plays the other's camera by roll-call."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from playwright.async_api import Page, async_playwright

from edge.bus import topics
from edge.bus.messages import Alert
from tests.support import require
from tests.support.centre_page import PAGE_TOKEN, page_world

# Two vehicles start in a test: up to a minute on a loaded machine, then the browser.
pytestmark = pytest.mark.timeout(180)

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-quic"]
# Functional bounds (ms): generous, a loaded 2-core machine is slow, not wrong.
SHOWN_MS = 30_000


@pytest.fixture(autouse=True)
def _chromium_installed() -> None:
    require(CHROMIUM.exists(), f"Debian's chromium is not installed ({CHROMIUM})")


def vehicle(v: str) -> str:
    return f'.vehicle[data-vehicle="{v}"]'


async def frames(page: Page) -> int:
    value: int = await page.evaluate(
        "window.edgeCentre.stats ? window.edgeCentre.stats.framesDecoded : 0")
    return value


async def test_the_centre_page_shows_both_vehicles_live_and_plays_a_roll_call(
        tmp_path: Path) -> None:
    async with page_world(tmp_path, ("north", "south")) as world, async_playwright() as pw:
        browser = await pw.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=str(CHROMIUM),
            headless=True, args=CHROMIUM_ARGS, viewport={"width": 1400, "height": 900})
        try:
            page = await browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            await page.goto(world.url + "/")
            await page.fill("#token", PAGE_TOKEN)
            await page.click("#token-ok")

            # Both vehicles, in contact, each with its camera live (from its bus, through
            # its sync service, its leaf node and the centre's sourcing).
            for v in ("north", "south"):
                await page.wait_for_selector(f"{vehicle(v)} .contact.in", timeout=SHOWN_MS)
                await page.wait_for_selector(
                    f'{vehicle(v)} .camera[data-camera="gate"] .badge.live', timeout=SHOWN_MS)
            assert "last heard" in (await page.text_content(f"{vehicle('north')} .heard") or "")
            # The thumbnail comes from the vehicle's uplink, through the centre.
            await page.wait_for_selector(f'{vehicle("south")} .camera[data-camera="gate"] img',
                                         timeout=SHOWN_MS)

            # Live: an alert on north's bus appears in the one timeline.
            world.vehicles["north"].bus.publish(topics.alert("gate"), Alert(
                severity="critical", source="cam/gate", text="smoke at the north gate"))
            entry = page.locator('#timeline li[data-vehicle="north"]',
                                 has_text="smoke at the north gate")
            await entry.wait_for(timeout=SHOWN_MS)
            assert "critical" in (await entry.text_content() or "")

            # north's link is cut: the page says so, with its age; south stays in contact.
            await world.vehicles["north"].link.cut()
            await page.wait_for_selector(f"{vehicle('north')} .contact.out", timeout=SHOWN_MS)
            await page.wait_for_selector(f"{vehicle('north')}.out")
            heard = await page.text_content(f"{vehicle('north')} .heard") or ""
            assert heard.startswith("last heard ") and heard.endswith(" s ago"), heard
            assert await page.is_visible(f"{vehicle('south')} .contact.in")
            # Its camera is no longer believed live: it shows what it last said, and when.
            await page.wait_for_selector(
                f'{vehicle("north")} .camera[data-camera="gate"] .badge.silent')
            meta = await page.text_content(f'{vehicle("north")} .camera .meta') or ""
            assert meta.startswith("was live "), meta

            # Roll-call: south's camera, played in the browser through the centre.
            await page.click(f'{vehicle("south")} .camera[data-camera="gate"]')
            await page.wait_for_function(
                "window.edgeCentre.playing && window.edgeCentre.playing.vehicle === 'south'"
                " && window.edgeCentre.stats && window.edgeCentre.stats.framesDecoded > 0",
                timeout=SHOWN_MS)
            before = await frames(page)
            # Frames keep being decoded: 30 more (a count; the timeout only guards a hang).
            await page.wait_for_function(
                f"window.edgeCentre.stats.framesDecoded >= {before + 30}", timeout=SHOWN_MS)
            south_uplink = world.vehicles["south"].uplink.uplink
            assert [s.camera_id for s in south_uplink.manager.sessions.values()] == ["gate"]
            assert not world.vehicles["north"].uplink.uplink.manager.sessions

            shot = tmp_path / "centre.png"
            await page.screenshot(path=str(shot))
            if os.environ.get("EDGE_SCREENSHOT_DIR"):
                shutil.copy(shot, Path(os.environ["EDGE_SCREENSHOT_DIR"]) / "centre.png")

            await page.click("#stop")
            await page.wait_for_function("!window.edgeCentre.playing")
            assert not errors, errors
        finally:
            await browser.close()
