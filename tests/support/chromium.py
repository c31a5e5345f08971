"""Debian's Chromium, headless through Playwright, on the vehicle's viewer page.

`viewer_page()` opens the uplink's own page (never ``playwright install``: the
browser is ``/usr/bin/chromium``), enters the token, and hands back a `Viewer`
that plays a camera with the page's own player and reads what the page shows:
getStats' figures (`window.edgeViewer.stats`, refreshed by the page every second)
and the picture on screen, drawn from the `<video>` into a canvas, so a test sees
what Chromium decoded rather than what was sent to it.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
from playwright.async_api import Page, async_playwright

from tests.support import require

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]

# The frame the <video> shows now, at its own size, as a PNG data URL (null before one).
_PICTURE = """() => {
  const v = document.getElementById("video");
  if (!v || !v.videoWidth) return null;
  const c = document.createElement("canvas");
  c.width = v.videoWidth;
  c.height = v.videoHeight;
  c.getContext("2d").drawImage(v, 0, 0);
  return c.toDataURL("image/png");
}"""


def require_chromium() -> None:
    require(CHROMIUM.exists(), f"Debian's chromium is not installed ({CHROMIUM})")


@dataclass
class Viewer:
    """The viewer page in Chromium; `errors` collects the page's uncaught errors."""

    page: Page
    errors: list[str] = field(default_factory=list)

    async def stats(self) -> dict[str, Any]:
        value: dict[str, Any] = await self.page.evaluate("window.edgeViewer.stats || {}")
        return value

    async def frames(self) -> int:
        return int((await self.stats()).get("framesDecoded") or 0)

    async def play(self, camera: str, within: float = 30.0) -> None:
        """Click the camera, as an operator does, and wait for its first decoded frame."""
        await self.page.wait_for_selector(f'.camera[data-camera="{camera}"] .badge.live',
                                          timeout=within * 1000)
        await self.page.click(f'.camera[data-camera="{camera}"]')
        await self.page.wait_for_function(
            f"window.edgeViewer.playing && window.edgeViewer.playing.camera === '{camera}' && "
            "window.edgeViewer.stats && window.edgeViewer.stats.framesDecoded > 0",
            timeout=within * 1000)

    async def wait_frames(self, count: int, within: float = 30.0) -> int:
        """Wait until at least `count` frames were decoded in all; the count then."""
        await self.page.wait_for_function(
            f"window.edgeViewer.stats && window.edgeViewer.stats.framesDecoded >= {count}",
            timeout=within * 1000)
        return await self.frames()

    async def picture(self) -> npt.NDArray[np.uint8] | None:
        """The picture on screen now (BGR, the video's own size); None before the first."""
        url: str | None = await self.page.evaluate(_PICTURE)
        if not url:
            return None
        png = np.frombuffer(base64.b64decode(url.partition(",")[2]), dtype=np.uint8)
        picture = cv2.imdecode(png, cv2.IMREAD_COLOR)
        assert picture is not None, "Chromium's canvas gave no decodable PNG"
        return np.asarray(picture, dtype=np.uint8)


@asynccontextmanager
async def viewer_page(url: str, token: str, profile_dir: Path) -> AsyncIterator[Viewer]:
    """The page at `url` in a fresh headless Chromium, signed in with `token`."""
    require_chromium()
    async with async_playwright() as pw:
        browser = await pw.chromium.launch_persistent_context(
            str(profile_dir), executable_path=str(CHROMIUM), headless=True, args=ARGS,
            viewport={"width": 1280, "height": 900})
        try:
            page = await browser.new_page()
            viewer = Viewer(page)
            page.on("pageerror", lambda e: viewer.errors.append(str(e)))
            await page.goto(url.rstrip("/") + "/")
            await page.fill("#token", token)
            await page.click("#token-ok")
            yield viewer
        finally:
            await browser.close()
