"""The demo's bus load, as the sync bench plays it: real message types on their real
topics, from the services that send them, at the demo's rates.

Per second: 5 cameras' status (1 Hz, frame counters moving, so each one is news) and a
thumbnail every 2 s each (a 12 KB JPEG blob the bridge must receive and leave behind);
2 drones' telemetry at 10 Hz and status at 1 Hz; 2 links' status at 1 Hz; the recorder's
and the uplink's status at 1 Hz; every service's health at 1 Hz (uptime moving); an
alert every 10 s, a commander's mark and a command event every 30 s. That is about 45
bus messages a second, of which the bridge's thinning (the shipped `[sync]` defaults:
telemetry at 1 Hz a drone, health every 5 s) passes about 15 (:mod:`edge.sync.bridge`).

:func:`tick` is pure (what is due at tick k, 10 ticks a second), so the one-vehicle
bench publishes it on a real bus and the fleet bench passes it through the bridge's own
thinner and encoding for each simulated vehicle.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from edge.bus import topics
from edge.bus.messages import (
    Alert,
    CameraStatus,
    CameraThumbnail,
    CommandEvent,
    DroneStatus,
    DroneTelemetry,
    EventMark,
    LinkStatus,
    Message,
    RecorderStatus,
    ServiceHealth,
    UplinkSessions,
    ViewerSession,
)

TICK_HZ = 10
CAMERAS = tuple(f"cam{i + 1:02d}" for i in range(5))
DRONES = (("alpha", 1), ("bravo", 1))
LINKS = ("sat", "lte")
THUMBNAIL = b"\xff\xd8" + bytes(12_000) + b"\xff\xd9"
ALERT_EVERY_TICKS = 10 * TICK_HZ
MARK_EVERY_TICKS = 30 * TICK_HZ
SERVICES = ("bus", *(f"camera@{c}" for c in CAMERAS), *(f"drone@{d}" for d, _ in DRONES),
            "uplink", "recorder", "links")


@dataclass(frozen=True, slots=True)
class Item:
    source: str  # the bus client that sends it (a service's name)
    topic: str
    message: Message
    blobs: tuple[bytes, ...] = ()


def tick(k: int) -> list[Item]:
    """What the demo's services publish at tick `k` (10 a second, from 0)."""
    t = k / TICK_HZ
    items: list[Item] = []
    for d, (link, sysid) in enumerate(DRONES):
        drone = topics.drone_id(link, sysid)
        # A slow circle: every sample differs, as a flying drone's do.
        a = 0.05 * t + d
        items.append(Item(f"drone@{link}", topics.drone_telemetry(drone), DroneTelemetry(
            drone_id=drone, sysid=sysid, lat=48.85 + 0.001 * math.sin(a),
            lon=2.35 + 0.001 * math.cos(a), alt_msl_m=120.0 + d, alt_rel_m=80.0 + d,
            heading_deg=(57.3 * a) % 360, groundspeed_mps=6.2, climb_mps=0.1, roll_deg=1.5,
            pitch_deg=-2.0, yaw_deg=(57.3 * a) % 360, battery_pct=max(0.0, 95 - t / 60),
            battery_v=22.4, gps_fix="3d", satellites=14)))
    if k % TICK_HZ:
        return items
    s = k // TICK_HZ  # whole seconds from here on
    for i, cam in enumerate(CAMERAS):
        source = f"camera@{cam}"
        items.append(Item(source, topics.cam_status(cam), CameraStatus(
            camera_id=cam, name=f"Camera {i + 1}", state="live", codec="h264",
            profile="main", width=1920, height=1080, fps=25.0, kbps=4000.0 + (s % 7),
            gop=25, last_frame_age_s=0.04, frames=25 * s, lat=48.85, lon=2.35)))
        if (s + i) % 2 == 0:
            items.append(Item(source, topics.cam_thumbnail(cam), CameraThumbnail(
                camera_id=cam, width=320, height=180, captured_ns=s * 1_000_000_000),
                (THUMBNAIL,)))
    for link, sysid in DRONES:
        drone = topics.drone_id(link, sysid)
        items.append(Item(f"drone@{link}", topics.drone_status(drone), DroneStatus(
            drone_id=drone, sysid=sysid, link=link, state="live", autopilot="ardupilot",
            vehicle_type="quadrotor", mode="GUIDED", armed=True, system_status="active",
            link_quality_pct=99.0, msgs_per_s=40.0 + (s % 3), last_message_age_s=0.02)))
    for i, link in enumerate(LINKS):
        items.append(Item("links", topics.link_status(link), LinkStatus(
            link_id=link, name=link, kind="satellite" if link == "sat" else "cellular",
            state="up", rtt_ms=600.0 + s % 5 if i == 0 else 45.0 + s % 5, loss_pct=0.0,
            tx_kbps=900.0 + s % 11, rx_kbps=120.0, active=i == 0)))
    items.append(Item("recorder", topics.RECORDER_STATUS, RecorderStatus(
        recording=True, path="/var/lib/edge/recordings", bytes_on_disk=2_500_000 * s,
        free_bytes=400_000_000_000, free_percent=80.0, bus_messages=52 * s)))
    items.append(Item("uplink", topics.UPLINK_SESSIONS, UplinkSessions(sessions=[
        ViewerSession(session_id="s1", viewer="10.77.0.1", camera_id=CAMERAS[0],
                      profile="sub", kbps=800.0 + s % 9, state="live")])))
    for svc in SERVICES:
        items.append(Item(svc, topics.svc_health(svc), ServiceHealth(
            service=svc, pid=1000, state="running", uptime_s=float(s), published=50 * s)))
    if k % ALERT_EVERY_TICKS == 0:
        cam = CAMERAS[s % len(CAMERAS)]
        items.append(Item(f"camera@{cam}", topics.alert(f"cam/{cam}"), Alert(
            severity="warning", source=f"cam/{cam}", text=f"motion at {cam} ({s} s)")))
    if k % MARK_EVERY_TICKS == 0:
        items.append(Item("dashboard", topics.EVENT_MARK,
                          EventMark(note=f"mark at {s} s", author="commander")))
        items.append(Item("drone@alpha", topics.EVENT_COMMAND, CommandEvent(
            service="drone@alpha", subject="alpha-1", action="goto", by="dashboard",
            status="accepted", elapsed_ms=120.0)))
    return items
