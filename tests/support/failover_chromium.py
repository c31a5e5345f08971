"""Chromium playing the vehicle's page through the tunnel: a process for the centre's namespace.

``python -m tests.support.failover_chromium URL TOKEN_FILE --local ADDRESS --remote ADDRESS
--chromium PATH --profile-dir DIR``: Debian's Chromium, headless through Playwright
(never ``playwright install``), loads the vehicle's page from `URL`'s host, enters the
token and plays `URL`'s camera and profile with the page's own player, as an operator
does.

The page's WHEP POST is routed through Playwright, which keeps only the tunnel's ICE
candidates in the offer (`--local`, the centre's tunnel address) and in the answer
(`--remote`, the vehicle's), for the reason :mod:`edge.bench.failover_viewer` gives: the
centre's namespace reaches the vehicle's WAN addresses directly, and a session paired
over one would die with that WAN instead of following the tunnel.

Every ``--every`` seconds it prints one JSON line::

    {"t": 1234.5, "state": "connected", "location": "http://.../whep/cam/ID",
     "frames": 281, "remote": "198.19.100.2"}

`t` is ``time.monotonic()`` (one clock for every process on the host), `frames` the
page's ``framesDecoded``, `remote` the address of the remote candidate of the pair
Chromium nominated (null before). It runs until SIGTERM or ``--seconds``, then stops
the player (which DELETEs the session) and exits 0; a page that never plays is one
``{"error": ...}`` line and exit 1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

from drivers.sim.link import netns
from edge.bench.failover_viewer import only_candidates

_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
_STATE = """async () => {
  const p = window.edgeViewer.playing, s = window.edgeViewer.stats || {};
  let remote = null;
  if (p && p.pc) {
    const report = await p.pc.getStats();
    report.forEach((r) => {
      if (r.type === "candidate-pair" && r.nominated && r.state === "succeeded") {
        const c = report.get(r.remoteCandidateId);
        if (c) remote = c.address || c.ip || null;
      }
    });
  }
  return {state: p ? p.state : null, location: p ? p.location : null,
          frames: s.framesDecoded || 0, remote};
}"""


def _emit(line: dict[str, Any]) -> None:
    print(json.dumps(line), flush=True)


async def run(url: str, token: str, local: str, remote: str, every: float, seconds: float,
              start_within: float, chromium: str, profile_dir: str) -> int:
    from playwright.async_api import Error as PlaywrightError
    from playwright.async_api import Route, async_playwright

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    parts = urlsplit(url)
    camera = parts.path.rstrip("/").rpartition("/")[2]
    profile = parse_qs(parts.query).get("profile", ["auto"])[0]
    deadline = time.monotonic() + start_within

    async def tunnel_only(route: Route) -> None:
        request = route.request
        if request.method != "POST":
            await route.continue_()
            return
        offer, _kept, _dropped = only_candidates(request.post_data or "", local)
        response = await route.fetch(post_data=offer)
        body = await response.text()
        if response.status == 201:
            body, _kept, _dropped = only_candidates(body, remote)
        await route.fulfill(response=response, body=body)

    async with async_playwright() as pw:
        browser = await pw.chromium.launch_persistent_context(
            profile_dir, executable_path=chromium, headless=True, args=_ARGS)
        try:
            page = await browser.new_page()
            await page.route("**/whep/**", tunnel_only)
            while True:  # the uplink may not answer yet
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
            # the page's own entry point for scripts, the one a click on the camera takes
            await page.evaluate("([c, p]) => window.edgeViewer.play(c, p)", [camera, profile])
            end = time.monotonic() + seconds
            while not stop.is_set() and time.monotonic() < end:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), every)
                seen: dict[str, Any] = await page.evaluate(_STATE)
                _emit({"t": round(time.monotonic(), 3), **seen})
            with contextlib.suppress(PlaywrightError):
                await page.evaluate("window.edgeViewer.stop()")
                # the DELETE is sent with keepalive; give it its round trip before closing
                await asyncio.sleep(1)
        finally:
            await browser.close()
    return 0


@dataclass(eq=False)
class ChromiumRun:
    """The process, started in namespace `ns` by a test, its reports read as they come."""

    proc: asyncio.subprocess.Process
    log: Path
    reports: list[dict[str, Any]] = field(default_factory=list)
    _news: asyncio.Event = field(default_factory=asyncio.Event)
    _reader: asyncio.Task[None] | None = None

    @classmethod
    async def start(cls, ns: str, url: str, token_file: Path, local: str, remote: str,
                    chromium: Path, profile_dir: Path, log: Path) -> ChromiumRun:
        with open(log, "ab") as err:  # noqa: ASYNC230 - a local file, once
            proc = await asyncio.create_subprocess_exec(
                *netns.exec_prefix(ns), sys.executable, "-m", "tests.support.failover_chromium",
                url, str(token_file), "--local", local, "--remote", remote,
                "--chromium", str(chromium), "--profile-dir", str(profile_dir),
                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=err)
        run = cls(proc, log)
        run._reader = asyncio.create_task(run._read())
        return run

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for raw in self.proc.stdout:
            with contextlib.suppress(ValueError):
                line = json.loads(raw)
                if isinstance(line, dict):
                    self.reports.append(line)
            self._news.set()
        self._news.set()

    async def report(self, where: Callable[[dict[str, Any]], bool], within: float, what: str,
                     since: int = 0) -> dict[str, Any]:
        """The first report from index `since` on for which `where` holds."""
        deadline = time.monotonic() + within
        while True:
            for report in self.reports[since:]:
                if "error" in report:
                    raise AssertionError(f"chromium: {report['error']}")
                if where(report):
                    return report
            since = len(self.reports)
            if self.proc.returncode is not None:
                raise AssertionError(f"chromium's process exited ({self.proc.returncode}): "
                                     f"{self.log.read_text(errors='replace')[-2000:]}")
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out after {within:g} s waiting for chromium: "
                                     f"{what}; last reports: {self.reports[-3:]}")
            self._news.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._news.wait(), left)

    async def stop(self) -> int:
        if self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 20)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        assert self.proc.returncode is not None
        return self.proc.returncode


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.support.failover_chromium",
                                description=__doc__.partition("\n")[0] if __doc__ else None)
    p.add_argument("url", help="the WHEP endpoint, e.g. http://198.19.100.2:8800/whep/cam")
    p.add_argument("token_file", help="a file holding the uplink's bearer token")
    p.add_argument("--local", required=True, help="the centre's tunnel address")
    p.add_argument("--remote", required=True, help="the vehicle's tunnel address")
    p.add_argument("--every", type=float, default=0.5, help="seconds between reports")
    p.add_argument("--seconds", type=float, default=300.0, help="stop after this long")
    p.add_argument("--start-within", type=float, default=60.0,
                   help="give up if the page does not play within this long")
    p.add_argument("--chromium", required=True, metavar="PATH")
    p.add_argument("--profile-dir", required=True, help="Chromium's profile directory")
    args = p.parse_args(argv)
    token = Path(args.token_file).read_text().strip()
    return asyncio.run(run(args.url, token, args.local, args.remote, args.every, args.seconds,
                           args.start_within, args.chromium, args.profile_dir))


if __name__ == "__main__":
    sys.exit(main())
