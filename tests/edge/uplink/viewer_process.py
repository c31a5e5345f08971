"""A WHEP viewer as a process of its own, reporting a JSON line every few seconds.

For tests that must run the viewer somewhere the test process is not (the centre's
network namespace of the link emulator): ``python -m tests.edge.uplink.viewer_process URL
TOKEN_FILE``. It POSTs to `URL` (retrying while the uplink is not listening yet or answers
409/503, as a player waiting for a camera would), decodes every frame with
:class:`~edge.bench.whep_viewer.WhepViewer`, and prints, every ``--every`` seconds::

    {"t": 12.0, "connected_s": 9.4, "state": "connected", "ice": "completed",
     "frames": 281, "size": [640, 360], "ended": false,
     "location": "http://.../whep/cam/ID", "session": {...}}

`t` counts from the POST that succeeded, `connected_s` from the moment the peer
connection first reported ``connected`` (null before), `location` names the WHEP
session, `session` is the uplink's own
view of this session from ``/api/state`` (null once the uplink no longer lists it; a
line has ``state_error`` instead when ``/api/state`` did not answer). It
runs until SIGTERM/SIGINT or ``--seconds``, then DELETEs its session and exits 0; a
POST that never succeeds is one ``{"error": ...}`` line and exit 1.

With ``--chromium PATH`` the player is that Chromium instead (headless, through
Playwright): it loads the vehicle's page from `URL`'s host, enters the token and
plays `URL`'s camera and profile as the page does; `frames` is the page's
``framesDecoded`` (getStats), `connected_s` counts from the first report that saw
the page's session ``connected``, and `ice` is null.

ICE consent: the viewer's aioice gives each consent check 0.5 s and closes the
connection after six unanswered in a row, so over a 600 ms round trip an unmodified
aiortc viewer drops the session itself after ~30 s, whatever the uplink does. The
centre's viewers are browsers, which keep RFC 7675 consent (retransmitted checks,
30 s without an answer); this viewer gets the same through the uplink's
:func:`~edge.uplink.consent.sustain_consent` so that what is tested is the uplink's
side of the session.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import aiohttp

from edge.bench.whep_viewer import WhepRefused, WhepViewer
from edge.uplink.consent import sustain_consent

_RETRY_STATUSES = (409, 503)


def _emit(line: dict[str, Any]) -> None:
    print(json.dumps(line), flush=True)


def _ice_connection(viewer: WhepViewer) -> Any:
    """The aioice Connection under the viewer's one transceiver (None if aiortc moved it)."""
    transceivers = viewer.pc.getTransceivers()
    if not transceivers:
        return None
    dtls = transceivers[0].receiver.transport
    return getattr(getattr(dtls, "transport", None), "_connection", None)


async def _connect(url: str, token: str, http: aiohttp.ClientSession,
                   within: float) -> WhepViewer:
    """A viewer whose POST was answered 201, retrying what a waiting player retries."""
    deadline = time.monotonic() + within
    last = "nothing tried"
    while time.monotonic() < deadline:
        viewer = WhepViewer(url, token, http=http)
        try:
            # generous: the POST crosses the emulated link (several round trips of 600 ms)
            await viewer.start(timeout=30)
        except WhepRefused as e:
            await viewer.close(delete=False)
            if e.status not in _RETRY_STATUSES:
                raise
            last = str(e)
            await asyncio.sleep(min(2.0, float(e.headers.get("Retry-After", "1") or 1)))
            continue
        except (aiohttp.ClientError, TimeoutError) as e:
            await viewer.close(delete=False)
            last = f"{type(e).__name__}: {e}"
            await asyncio.sleep(0.5)
            continue
        # No await between start() and this: aiortc only scheduled the ICE connect,
        # whose last step starts the consent task that this replaces.
        if not sustain_consent(_ice_connection(viewer)):
            _emit({"warning": "the viewer keeps aioice's own consent checks"})
        return viewer
    raise TimeoutError(f"no session within {within:g} s (last: {last})")


async def _session_state(http: aiohttp.ClientSession, url: str, token: str,
                         location: str | None) -> dict[str, Any]:
    """``{"session": the uplink's entry or None}``, or ``{"state_error": why}``."""
    if location is None:
        return {"session": None}
    session_id = location.rstrip("/").rpartition("/")[2]
    try:
        async with http.get(urljoin(url, "/api/state"),
                            headers={"Authorization": f"Bearer {token}"},
                            timeout=aiohttp.ClientTimeout(total=4)) as resp:
            if resp.status != 200:
                return {"state_error": f"/api/state answered {resp.status}"}
            state = await resp.json()
    except (aiohttp.ClientError, TimeoutError, ValueError) as e:
        return {"state_error": f"/api/state: {type(e).__name__}: {e}"}
    for session in state.get("sessions", []):
        if session.get("session_id") == session_id:
            return {"session": dict(session)}
    return {"session": None}


async def run(url: str, token: str, every: float, seconds: float | None,
              start_within: float) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with aiohttp.ClientSession() as http:
        try:
            viewer = await _connect(url, token, http, start_within)
        except (WhepRefused, TimeoutError) as e:
            _emit({"error": str(e)})
            return 1
        started = time.monotonic()
        connected_at: list[float] = []

        def on_state() -> None:
            if viewer.pc.connectionState == "connected" and not connected_at:
                connected_at.append(time.monotonic())

        viewer.pc.on("connectionstatechange", on_state)
        try:
            end = None if seconds is None else started + seconds
            while not stop.is_set() and (end is None or time.monotonic() < end):
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), every)
                now = time.monotonic()
                s = viewer.stats
                _emit({"t": round(now - started, 2),
                       "connected_s": round(now - connected_at[0], 2) if connected_at else None,
                       "state": viewer.pc.connectionState,
                       "ice": viewer.pc.iceConnectionState,
                       "frames": s.frames, "size": [s.width, s.height],
                       "ended": viewer.ended.is_set(), "location": viewer.location,
                       **await _session_state(http, url, token, viewer.location)})
        finally:
            await viewer.close()
    return 0


_CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run",
                  "--disable-quic"]
_PAGE_STATE = """() => {
  const p = window.edgeViewer.playing, s = window.edgeViewer.stats || {};
  return {state: p ? p.state : null, location: p ? p.location : null,
          frames: s.framesDecoded || 0, size: [s.width || 0, s.height || 0]};
}"""


async def run_chromium(url: str, token: str, every: float, seconds: float | None,
                       start_within: float, chromium: str, profile_dir: str) -> int:
    """The same reports from Chromium playing the vehicle's own page, as an operator does.

    The page retries a session that failed with a new one; a report carries the
    session's `location`, so a replaced session shows as a new one, not as a survivor.
    """
    from playwright.async_api import Error as PlaywrightError
    from playwright.async_api import async_playwright

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    parts = urlsplit(url)
    camera = parts.path.rstrip("/").rpartition("/")[2]
    profile = parse_qs(parts.query).get("profile", ["auto"])[0]
    deadline = time.monotonic() + start_within
    async with aiohttp.ClientSession() as http, async_playwright() as pw:
        browser = await pw.chromium.launch_persistent_context(
            profile_dir, executable_path=chromium, headless=True, args=_CHROMIUM_ARGS)
        try:
            page = await browser.new_page()
            while True:  # the uplink may not listen yet
                try:
                    await page.goto(urljoin(url, "/"), timeout=30_000)
                    break
                except PlaywrightError as e:
                    if time.monotonic() > deadline:
                        _emit({"error": f"the page did not load: {e}"})
                        return 1
                    await asyncio.sleep(0.5)
            await page.fill("#token", token)
            await page.click("#token-ok")
            try:
                await page.wait_for_selector(f'.camera[data-camera="{camera}"] .badge.live',
                                             timeout=max(1.0, deadline - time.monotonic()) * 1000)
            except PlaywrightError as e:
                _emit({"error": f"camera {camera} not shown live: {e}"})
                return 1
            # the page's own entry point for scripts: a click plays the profile chosen in
            # the player's menu, which only shows once something plays
            await page.evaluate("([c, p]) => window.edgeViewer.play(c, p)", [camera, profile])
            started = time.monotonic()
            connected_at: list[float] = []
            end = None if seconds is None else started + seconds
            while not stop.is_set() and (end is None or time.monotonic() < end):
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), every)
                seen: dict[str, Any] = await page.evaluate(_PAGE_STATE)
                now = time.monotonic()
                if seen["state"] == "connected" and not connected_at:
                    connected_at.append(now)
                _emit({"t": round(now - started, 2),
                       "connected_s": round(now - connected_at[0], 2) if connected_at else None,
                       "state": seen["state"], "ice": None, "frames": seen["frames"],
                       "size": seen["size"], "ended": seen["state"] is None,
                       "location": seen["location"],
                       **await _session_state(http, url, token, seen["location"])})
            with contextlib.suppress(PlaywrightError):
                await page.evaluate("window.edgeViewer.stop()")
                # the DELETE is sent with keepalive; give it its round trip before closing
                await asyncio.sleep(2)
        finally:
            await browser.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.edge.uplink.viewer_process",
                                description=__doc__.partition("\n")[0] if __doc__ else None)
    p.add_argument("url", help="the WHEP endpoint, e.g. http://198.18.0.2:8800/whep/cam")
    p.add_argument("token_file", help="a file holding the uplink's bearer token")
    p.add_argument("--every", type=float, default=5.0, help="seconds between reports")
    p.add_argument("--seconds", type=float, default=None, help="stop after this long")
    p.add_argument("--start-within", type=float, default=60.0,
                   help="give up if no POST is answered 201 within this long")
    p.add_argument("--chromium", metavar="PATH",
                   help="play in this Chromium (the vehicle's page, via Playwright) instead")
    p.add_argument("--profile-dir", default="/tmp/viewer-chromium-profile",
                   help="Chromium's profile directory (with --chromium)")
    args = p.parse_args(argv)
    token = Path(args.token_file).read_text().strip()
    if args.chromium:
        return asyncio.run(run_chromium(args.url, token, args.every, args.seconds,
                                        args.start_within, args.chromium, args.profile_dir))
    return asyncio.run(run(args.url, token, args.every, args.seconds, args.start_within))


if __name__ == "__main__":
    sys.exit(main())
