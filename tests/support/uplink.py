"""The uplink's test bench: real broker, simulated cameras, the real services, real peers.

Every service here runs under the real runner (``host()``) in the test's
event loop: a simulated camera (a real RTSP server) feeds `camera@ID`, which
publishes on the media plane; `uplink` serves WHEP to aiortc clients or
Chromium. Configs are written as the operator would (a token file beside it).
The fixtures are in tests/edge/uplink/conftest.py.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from drivers.sim.camera import SimCamera
from edge.bus import topics
from edge.bus.client import BusClient
from edge.bus.endpoints import Endpoints
from edge.bus.messages import LinkStatus
from edge.config import VehicleConfig, parse_config
from edge.runtime.service import Service
from edge.services.camera import CameraService
from edge.services.uplink import UplinkService
from tests import support

TOKEN = "test-token-0123456789abcdef"


def offer_sdp(*, video: bool = True, h264: bool = True, direction: str = "recvonly") -> str:
    """A browser-like offer (VP8 first) without a browser, for the cheap refusal tests."""
    lines = ["v=0", "o=- 1 2 IN IP4 127.0.0.1", "s=-", "t=0 0", "a=group:BUNDLE 0"]
    if video:
        pts = "96 97 102 103" if h264 else "96 97"
        lines += [f"m=video 9 UDP/TLS/RTP/SAVPF {pts}", "c=IN IP4 0.0.0.0",
                  "a=rtcp:9 IN IP4 0.0.0.0", "a=ice-ufrag:abcd", "a=ice-pwd:" + "p" * 24,
                  "a=fingerprint:sha-256 " + ":".join(["AB"] * 32), "a=setup:actpass",
                  "a=mid:0", f"a={direction}", "a=rtcp-mux",
                  "a=rtpmap:96 VP8/90000", "a=rtcp-fb:96 nack",
                  "a=rtpmap:97 rtx/90000", "a=fmtp:97 apt=96"]
        if h264:
            lines += ["a=rtpmap:102 H264/90000", "a=rtcp-fb:102 nack", "a=rtcp-fb:102 nack pli",
                      "a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;"
                      "profile-level-id=42e01f",
                      "a=rtpmap:103 rtx/90000", "a=fmtp:103 apt=102"]
    return "\r\n".join(lines) + "\r\n"


def write_config(tmp: Path, cameras: list[dict[str, Any]], uplink: dict[str, Any] | None = None,
                 **extra: Any) -> tuple[VehicleConfig, Path]:
    (tmp / "uplink.token").write_text(TOKEN + "\n")
    up = {"listen": "127.0.0.1:0", "token": {"file": "uplink.token"}, **(uplink or {})}
    data = {"vehicle": "test", "cameras": cameras, "uplink": up, **extra}
    return parse_config(data, "test"), tmp / "vehicle.toml"


@asynccontextmanager
async def hosted(cls: type[Service], name: str, config: VehicleConfig, config_path: Path,
                 endpoints: Endpoints, instance: str | None = None) -> AsyncIterator[Service]:
    """A service run by the real runner in this loop; stopped (as SIGTERM would) at exit."""
    async with support.hosted(cls, name, config, config_path, endpoints) as h:
        yield h.service


@dataclass
class Vehicle:
    """What a test drives: cameras, the uplink's URL, an HTTP client, the bus."""

    uplink: UplinkService
    url: str
    http: aiohttp.ClientSession
    bus: BusClient
    cameras: dict[str, SimCamera]
    config: VehicleConfig

    def whep(self, camera: str, query: str = "") -> str:
        return f"{self.url}/whep/{camera}{query}"

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {TOKEN}"}

    async def wait_live(self, camera: str, timeout: float = 15.0) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            cam = self.uplink.state.camera(camera)
            if cam is not None and cam.live and cam.streams:
                return
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"camera {camera} not live at the uplink within {timeout} s: "
                                   f"{cam.to_json() if cam else None}")
            await asyncio.sleep(0.05)


@asynccontextmanager
async def vehicle(tmp: Path, endpoints: Endpoints, bus: BusClient,
                  sims: dict[str, dict[str, Any]],
                  uplink: dict[str, Any] | None = None,
                  camera_extra: dict[str, dict[str, Any]] | None = None,
                  **config_extra: Any) -> AsyncIterator[Vehicle]:
    """Simulated cameras (name -> SimCamera options), their camera services and the uplink."""
    async with AsyncExitStack() as stack:
        cams: dict[str, SimCamera] = {}
        for name, options in sims.items():
            cams[name] = await stack.enter_async_context(SimCamera(name, **options))
        cam_cfg = []
        for name, cam in cams.items():
            entry: dict[str, Any] = {"id": name, "name": name.title(), "main": cam.url("main")}
            if "sub" in cam.specs:
                entry["sub"] = cam.url("sub")
            entry.update((camera_extra or {}).get(name, {}))
            cam_cfg.append(entry)
        config, path = write_config(tmp, cam_cfg, uplink, **config_extra)
        for name in cams:
            await stack.enter_async_context(hosted(CameraService, f"camera@{name}", config, path,
                                                   endpoints, instance=name))
        service = await stack.enter_async_context(
            hosted(UplinkService, "uplink", config, path, endpoints))
        assert isinstance(service, UplinkService)
        http = await stack.enter_async_context(aiohttp.ClientSession())
        yield Vehicle(service, service.url, http, bus, cams, config)


# Small, quick cameras: 640x360 main only, a short pre-encoded loop.
SMALL: dict[str, Any] = {"main": (640, 360), "sub": None, "loop_seconds": 2.0}


class LinkFeed:
    """`link/<id>/status` on the bus as the links service publishes it: every link once a
    second and at once on a change, the one carrying the tunnel marked `active`.

    ``async with LinkFeed(bus, {"lte": "lte-private", "sat": "satellite"}, active="lte")``;
    :meth:`activate` moves the tunnel (``None``: no link active, as when every WAN is down
    or before the links service has chosen)."""

    def __init__(self, bus: BusClient, links: dict[str, str], active: str | None = None,
                 every: float = 1.0) -> None:
        self.bus = bus
        self.links = dict(links)  # id -> kind
        self.active = active
        self.every = every
        self._task: asyncio.Task[None] | None = None

    def activate(self, link_id: str | None) -> None:
        self.active = link_id
        self.publish()

    def publish(self) -> None:
        # The newly active link first: a reader never sees two active links for long,
        # and never none between them.
        for link_id in sorted(self.links, key=lambda i: i != self.active):
            self.bus.publish(topics.link_status(link_id), LinkStatus(
                link_id=link_id, name=link_id, kind=self.links[link_id], state="up",
                rtt_ms=600.0 if self.links[link_id] == "satellite" else 50.0, loss_pct=0.0,
                active=link_id == self.active))

    async def _run(self) -> None:
        while True:
            self.publish()
            await asyncio.sleep(self.every)

    async def __aenter__(self) -> LinkFeed:
        self._task = asyncio.create_task(self._run(), name="link-feed")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
