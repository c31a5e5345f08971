"""A fixed scene for snapshots and model tests: every kind of device in every state."""

from __future__ import annotations

from typing import Any

from edge.bus import topics
from edge.bus.messages import (
    Alert,
    CameraStatus,
    DroneStatus,
    DroneTelemetry,
    EventMark,
    LinkStatus,
    ServiceHealth,
    UplinkSessions,
    ViewerSession,
)
from edge.config import VehicleConfig, parse_config
from ui import thumbnail
from ui.state import DashboardState

# The demo vehicle's devices, spelled here so that snapshots do not change when
# config/demo.toml does.
SCENE_CONFIG: dict[str, Any] = {
    "vehicle": "demo",
    "position": {"lat": 30.5928, "lon": 114.3055},
    "cameras": [
        {"id": "north-gate", "name": "North gate", "main": "rtsp://127.0.0.1:8554/n"},
        {"id": "east-yard", "name": "East yard", "main": "rtsp://127.0.0.1:8555/e"},
        {"id": "furnace-3", "name": "Furnace 3", "main": "rtsp://127.0.0.1:8556/f"},
        {"id": "south-road", "name": "South road", "main": "rtsp://127.0.0.1:8557/s"},
    ],
    "drones": [
        {"id": "alpha", "name": "Drone Alpha", "connection": "tcp:127.0.0.1:5760"},
        {"id": "bravo", "name": "Drone Bravo", "connection": "tcp:127.0.0.1:5761"},
    ],
    "links": [
        {"id": "sat", "name": "Satellite", "kind": "satellite"},
        {"id": "lte", "name": "4G private network", "kind": "lte-private"},
    ],
}
T0 = 1_790_000_000.0  # a fixed "now" (2026-09-21 14:13:20 UTC)


class FixedClock:
    def __init__(self, t: float = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def ns(seconds_ago: float) -> int:
    return int((T0 - seconds_ago) * 1e9)


def demo_config() -> VehicleConfig:
    return parse_config(SCENE_CONFIG)


def scene(config: VehicleConfig | None = None, clock: FixedClock | None = None) -> DashboardState:
    clock = clock or FixedClock()
    config = config or demo_config()
    st = DashboardState(config, clock)
    st.bus.heartbeat_at = T0
    st.set_bus_connected(True)
    for name in ("bus", "camera@north-gate", "camera@east-yard", "drone@alpha"):
        st.apply(topics.svc_health(name), ServiceHealth(service=name), ns(0.5))
    st.apply(topics.cam_status("north-gate"), CameraStatus(
        camera_id="north-gate", state="live", codec="h264", profile="baseline", width=1280,
        height=720, fps=25.0, kbps=812.0, gop=50, last_frame_age_s=0.04, frames=12345,
        lat=30.5941, lon=114.3049), ns(0.2))
    st.apply(topics.cam_status("east-yard"), CameraStatus(
        camera_id="east-yard", state="live", codec="h265", fps=12.5, kbps=2400.0,
        last_frame_age_s=0.1), ns(5.0))
    st.apply(topics.cam_status("furnace-3"), CameraStatus(
        camera_id="furnace-3", state="down", reason="connection refused", reconnects=7),
        ns(0.5))
    st.apply(topics.cam_status("south-road"), CameraStatus(
        camera_id="south-road", state="connecting", reason="DESCRIBE…"), ns(0.5))
    for i, cam in enumerate(("north-gate", "east-yard", "furnace-3")):
        st.set_thumbnail(cam, thumbnail.test_pattern(160, 90, seed=i), ns(1.0))
    st.apply(topics.drone_status("alpha-1"), DroneStatus(
        drone_id="alpha-1", sysid=1, link="alpha", state="live", mode="GUIDED", armed=True,
        link_quality_pct=98.0, last_message_age_s=0.1), ns(0.3))
    st.apply(topics.drone_telemetry("alpha-1"), DroneTelemetry(
        drone_id="alpha-1", sysid=1, lat=30.5960, lon=114.3080, alt_rel_m=52.4,
        alt_msl_m=80.0, groundspeed_mps=4.3, heading_deg=87.0, battery_pct=76.0,
        battery_v=15.8, gps_fix="3D", satellites=14), ns(0.2))
    st.apply(topics.drone_status("bravo-2"), DroneStatus(
        drone_id="bravo-2", sysid=2, link="bravo", state="live", mode="RTL", armed=True,
        link_quality_pct=61.0, last_message_age_s=0.5), ns(0.4))
    st.apply(topics.drone_telemetry("bravo-2"), DroneTelemetry(
        drone_id="bravo-2", sysid=2, lat=30.5900, lon=114.3000, alt_rel_m=18.0,
        groundspeed_mps=7.9, battery_pct=17.0, gps_fix="3D", satellites=9), ns(12.0))
    st.apply(topics.link_status("sat"), LinkStatus(
        link_id="sat", name="Satellite", kind="satellite", state="up", rtt_ms=612.0,
        loss_pct=0.4, tx_kbps=1200.0, rx_kbps=300.0), ns(0.5))
    st.apply(topics.UPLINK_SESSIONS, UplinkSessions(sessions=[
        ViewerSession(session_id="s1", viewer="10.8.0.5 Chrome", camera_id="north-gate",
                      profile="sub", kbps=640.0),
        ViewerSession(session_id="s2", viewer="10.8.0.9 VLC", camera_id="furnace-3",
                      profile="main", kbps=0.0),
    ]), ns(0.5))
    st.apply(topics.alert("cam/furnace-3"), Alert(
        severity="error", source="cam/furnace-3", text="camera down: connection refused"),
        ns(40))
    st.apply(topics.alert("drone/bravo-2"), Alert(
        severity="warning", source="drone/bravo-2", text="battery 17%: returning to launch"),
        ns(20))
    st.apply(topics.EVENT_MARK, EventMark(note="casualty found at north gate",
                                          author="chen@dashboard"), ns(10))
    st.apply(topics.alert("link/sat"), Alert(severity="info", source="link/sat",
                                             text="satellite link up"), ns(5))
    return st
