"""A fake vehicle on the bus: what the broker, cameras, drones, links and uplink publish.

The pilot tests use it as their publisher, and it is the load for measuring the
dashboard's CPU use without simulators:

    .venv/bin/python -m tests.ui.feed --bus DIR --cameras 8 --drones 2

(with a broker on DIR: ``EDGE_RUNTIME_DIR=DIR .venv/bin/edge run bus -c config/demo.toml``).
Rates follow the services: camera status 1 Hz, thumbnails every 2 s, drone
telemetry 5 Hz, drone status 1 Hz, health 1 Hz.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import time
from dataclasses import dataclass

from edge.bus import topics
from edge.bus.client import BusClient
from edge.bus.endpoints import Endpoints
from edge.bus.messages import (
    CameraStatus,
    CameraThumbnail,
    DroneStatus,
    DroneTelemetry,
    LinkStatus,
    ServiceHealth,
    UplinkSessions,
    ViewerSession,
)
from ui import thumbnail

HOME = (30.5928, 114.3055)


@dataclass
class FeedRates:
    heartbeat_s: float = 1.0
    camera_status_s: float = 1.0
    thumbnail_s: float = 2.0
    telemetry_s: float = 0.2
    drone_status_s: float = 1.0


class FakeVehicle:
    def __init__(self, bus: BusClient, cameras: list[str], drones: list[tuple[str, int]],
                 rates: FeedRates | None = None, links: list[str] | None = None) -> None:
        self.bus = bus
        self.cameras = cameras
        self.drones = drones  # (link id, sysid)
        self.links = links or []
        self.rates = rates or FeedRates()
        self.fps = 25.0
        self.heartbeats = True
        self._jpegs = [thumbnail.encode_jpeg(thumbnail.test_pattern(160, 90, seed=i))
                       for i in range(4)]
        self._t0 = time.monotonic()

    @staticmethod
    def drone_id(link: str, sysid: int) -> str:
        return f"{link}-{sysid}"

    def heartbeat(self) -> None:
        if self.heartbeats:
            self.bus.publish(topics.svc_health("bus"),
                             ServiceHealth(service="bus", pid=os.getpid()))

    def camera_status(self, cam: str, **fields: object) -> None:
        status = CameraStatus(camera_id=cam, state="live", codec="h264", width=1280, height=720,
                              fps=self.fps, kbps=800.0, last_frame_age_s=0.04)
        for k, v in fields.items():
            setattr(status, k, v)
        self.bus.publish(topics.cam_status(cam), status)

    def camera_thumbnail(self, cam: str, n: int = 0) -> None:
        self.bus.publish(topics.cam_thumbnail(cam), CameraThumbnail(
            camera_id=cam, width=160, height=90, captured_ns=time.time_ns()),
            self._jpegs[n % len(self._jpegs)])

    def drone_telemetry(self, link: str, sysid: int) -> None:
        t = time.monotonic() - self._t0
        self.bus.publish(topics.drone_telemetry(self.drone_id(link, sysid)), DroneTelemetry(
            drone_id=self.drone_id(link, sysid), sysid=sysid,
            lat=HOME[0] + 0.001 * math.sin(t / 10 + sysid), lon=HOME[1] + 0.001 * math.cos(t / 10),
            alt_rel_m=40.0 + sysid, alt_msl_m=70.0, groundspeed_mps=5.0, heading_deg=90.0,
            battery_pct=80.0 - t / 60, battery_v=15.8, gps_fix="3D", satellites=12))

    def drone_status(self, link: str, sysid: int, **fields: object) -> None:
        status = DroneStatus(drone_id=self.drone_id(link, sysid), sysid=sysid, link=link,
                             state="live", mode="GUIDED", armed=True, link_quality_pct=97.0,
                             msgs_per_s=40.0, last_message_age_s=0.05)
        for k, v in fields.items():
            setattr(status, k, v)
        self.bus.publish(topics.drone_status(self.drone_id(link, sysid)), status)

    def everything_once(self, n: int = 0) -> None:
        self.heartbeat()
        for cam in self.cameras:
            self.camera_status(cam)
            self.camera_thumbnail(cam, n)
        for link, sysid in self.drones:
            self.drone_status(link, sysid)
            self.drone_telemetry(link, sysid)
        self.links_and_viewers()

    def links_and_viewers(self) -> None:
        for link in self.links:
            self.bus.publish(topics.link_status(link), LinkStatus(
                link_id=link, state="up", rtt_ms=600.0, loss_pct=0.5, tx_kbps=1500.0,
                rx_kbps=200.0))
        if self.links:
            self.bus.publish(topics.UPLINK_SESSIONS, UplinkSessions(sessions=[
                ViewerSession(session_id=f"s{i}", viewer="10.0.0.7", camera_id=c,
                              profile="sub", kbps=600.0) for i, c in enumerate(self.cameras[:2])]))

    async def run(self) -> None:
        """Publish at the services' rates until cancelled."""
        r = self.rates
        next_at = dict.fromkeys(("hb", "cam", "thumb", "tel", "dst"), time.monotonic())
        n = 0
        while True:
            now = time.monotonic()
            if now >= next_at["hb"]:
                next_at["hb"] += r.heartbeat_s
                self.heartbeat()
            if now >= next_at["cam"]:
                next_at["cam"] += r.camera_status_s
                for cam in self.cameras:
                    self.camera_status(cam)
                self.links_and_viewers()
            if now >= next_at["thumb"]:
                next_at["thumb"] += r.thumbnail_s
                n += 1
                for cam in self.cameras:
                    self.camera_thumbnail(cam, n)
            if now >= next_at["tel"]:
                next_at["tel"] += r.telemetry_s
                for link, sysid in self.drones:
                    self.drone_telemetry(link, sysid)
            if now >= next_at["dst"]:
                next_at["dst"] += r.drone_status_s
                for link, sysid in self.drones:
                    self.drone_status(link, sysid)
            await asyncio.sleep(max(0.0, min(next_at.values()) - time.monotonic()))


async def _main(args: argparse.Namespace) -> None:
    d = args.bus
    endpoints = Endpoints(pub=f"ipc://{d}/bus-pub.sock", sub=f"ipc://{d}/bus-sub.sock",
                          router=f"ipc://{d}/bus-router.sock", runtime_dir=d)
    bus = BusClient(endpoints, source="feed")
    cams = [f"cam-{i + 1}" for i in range(args.cameras)]
    drones = [(("alpha", "bravo", "charlie", "delta")[i % 4], 1 + i // 4)
              for i in range(args.drones)]
    feed = FakeVehicle(bus, cams, drones, links=["sat", "lte"])
    # The broker's own health is the heartbeat: do not fake it when a real broker runs.
    feed.heartbeats = not args.no_heartbeat
    try:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(feed.run(), args.seconds or None)
    finally:
        await bus.close()


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--bus", required=True, help="runtime dir of a running broker")
    p.add_argument("--cameras", type=int, default=8)
    p.add_argument("--drones", type=int, default=2)
    p.add_argument("--seconds", type=float, default=0)
    p.add_argument("--no-heartbeat", action="store_true",
                   help="leave svc/bus/health to the real broker service")
    asyncio.run(_main(p.parse_args()))
