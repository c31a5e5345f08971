"""A WHIP server that is not ours, for the uplink's push tests: werift (npm, pure TypeScript
WebRTC, independent of aiortc) behind a small Node endpoint, tests/support/werift_whip/.
It is also a centre media server in miniature: it fans each pushed feed out to WHEP viewers
(``whip.whep_url("north")``; ``await whip.viewers()``, ``await whip.forwarded()``).

``async with WeriftWhip(token) as whip``: ``whip.url("north-gate")`` is the WHIP URL to
push to, ``await whip.stats()`` what it received per session (RTP packets, frames by RTP
marker, keyframes, bytes, connection state, whether it was DELETEd), ``await whip.kill()``
SIGKILLs it as a crash would and ``await whip.start()`` brings it back on the same port.
Its packages are installed by ``npm ci`` in .ci/run (and ``make test``); off CI a test
skips when Node or they are missing.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

import aiohttp

from tests.support import die_with_test, require

SERVER_DIR = Path(__file__).resolve().parent / "werift_whip"
# Node's start and werift's import on a loaded 2-core machine: a few seconds at worst.
START_S = 30.0


def require_werift() -> str:
    """The node binary, once Node and werift are there (else skip; on CI, fail)."""
    node = shutil.which("node")
    require(node, "node is not installed (the WHIP push tests run werift on it)")
    require((SERVER_DIR / "node_modules" / "werift").is_dir(),
            f"werift is not installed: run `npm ci` in {SERVER_DIR}")
    assert node is not None
    return node


class WeriftWhip:
    def __init__(self, token: str = "") -> None:
        self.node = require_werift()
        self.token = token
        self.port = 0  # the first start picks one; restarts keep it
        self.proc: asyncio.subprocess.Process | None = None
        self._http: aiohttp.ClientSession | None = None

    def url(self, name: str = "feed") -> str:
        return f"http://127.0.0.1:{self.port}/whip/{name}"

    def whep_url(self, name: str = "feed") -> str:
        """Where a viewer plays what is pushed to :meth:`url` of the same `name`."""
        return f"http://127.0.0.1:{self.port}/whep/{name}"

    async def start(self) -> None:
        args = [str(SERVER_DIR / "server.js"), "--port", str(self.port)]
        if self.token:
            args += ["--token", self.token]
        self.proc = await asyncio.create_subprocess_exec(
            self.node, *args, cwd=SERVER_DIR, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL, preexec_fn=die_with_test)
        assert self.proc.stdout is not None
        try:
            line = await asyncio.wait_for(self.proc.stdout.readline(), START_S)
        except TimeoutError:
            await self.kill()
            raise AssertionError(f"the werift WHIP server did not start within {START_S:g} s"
                                 ) from None
        if not line:
            code = await self.proc.wait()
            raise AssertionError(f"the werift WHIP server exited at start ({code})")
        self.port = int(json.loads(line)["port"])

    async def kill(self) -> None:
        """SIGKILL: no goodbye to its peers, as a crash or a power cut."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.returncode is None:
            proc.kill()
            await proc.wait()

    async def _stats(self) -> dict[str, Any]:
        if self._http is None:
            self._http = aiohttp.ClientSession()
        try:
            async with self._http.get(f"http://127.0.0.1:{self.port}/stats",
                                      timeout=aiohttp.ClientTimeout(total=5)) as r:
                body: dict[str, Any] = await r.json()
        except (aiohttp.ClientError, TimeoutError):
            return {}
        return body

    async def stats(self) -> dict[str, dict[str, Any]]:
        """Per WHIP session id: what the server received (empty while it is down)."""
        sessions: dict[str, dict[str, Any]] = (await self._stats()).get("sessions", {})
        return sessions

    async def viewers(self) -> dict[str, dict[str, Any]]:
        """Per WHEP viewer id: its name, the WHIP session feeding it (``publisher``), its
        connection state, the RTP packets forwarded to it, whether it was DELETEd."""
        found: dict[str, dict[str, Any]] = (await self._stats()).get("viewers", {})
        return found

    async def forwarded(self) -> int:
        """RTP packets forwarded to WHEP viewers in the server's current run."""
        return int((await self._stats()).get("forwarded", 0))

    async def frames(self) -> int:
        """Frames received in all sessions of the server's current run."""
        return sum(int(s["frames"]) for s in (await self.stats()).values())

    async def __aenter__(self) -> WeriftWhip:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.kill()
        if self._http is not None:
            await self._http.close()
