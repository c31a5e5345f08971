"""The dashboard's model, formatting and thumbnails, without Textual."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.bus import topics
from edge.bus.messages import (
    Alert,
    CameraStatus,
    DroneStatus,
    DroneTelemetry,
    LinkStatus,
    ServiceHealth,
)
from edge.bus.mirror import MAX_DEVICES, freshness
from tests.ui.scenario import T0, FixedClock, demo_config, ns, scene
from ui import format as fmt
from ui import geo, thumbnail
from ui.keys import HELP
from ui.state import DashboardState

ODD_VALUES = [None, math.nan, math.inf, -math.inf, -1.0, 0, 1e300, -1e300, True, "x", 10**30]


@pytest.mark.parametrize("value", ODD_VALUES)
def test_formatting_takes_anything(value: object) -> None:
    for text in (fmt.number(value), fmt.rate_text(value), fmt.age_text(fmt.finite(value)),
                 fmt.battery_level(value), fmt.clock_text(fmt.finite(value)),
                 fmt.distance_text(fmt.finite(value)), freshness(fmt.finite(value))):
        assert isinstance(text, str) and len(text) <= 12


def test_clean_strips_what_would_move_the_terminal() -> None:
    assert fmt.clean("a\x1b[2Jb\nc\u202ed\x07") == "a [2Jb c d "
    assert fmt.clean("北门 camera") == "北门 camera"
    assert len(fmt.clean("x" * 10**6)) == fmt.MAX_TEXT
    assert fmt.clean(None) == "" and fmt.clean(12) == "12"


def test_freshness_thresholds() -> None:
    assert [freshness(a) for a in (None, 0.0, 3.0, 3.1, 10.0, 10.1)] == [
        "none", "fresh", "fresh", "stale", "stale", "old"]
    assert [fmt.battery_level(p) for p in (90, 40, 39.9, 20, 19.9, None)] == [
        "ok", "ok", "warn", "warn", "low", "none"]


def test_haversine() -> None:
    # One degree of latitude is about 111.2 km everywhere.
    assert geo.haversine_m((30.0, 114.0), (31.0, 114.0)) == pytest.approx(111_195, rel=1e-3)
    assert geo.bearing_deg((30.0, 114.0), (30.0, 115.0)) == pytest.approx(90, abs=0.5)
    assert geo.valid(0, 0) is None and geo.valid(91, 0) is None
    assert geo.valid(math.nan, 1) is None and geo.valid(30.5, 114.3) == (30.5, 114.3)


def test_config_devices_are_there_before_any_message() -> None:
    s = DashboardState(demo_config(), FixedClock())
    assert list(s.cameras) == ["north-gate", "east-yard", "furnace-3", "south-road"]
    assert [c.condition(T0) for c in s.cameras.values()][0] == ("unknown", "no data")
    assert [d.drone_id for d in s.drone_list()] == ["alpha", "bravo"]
    assert all(d.placeholder for d in s.drones.values())
    assert [lk.status for lk in s.links.values()] == [None, None]


def test_a_real_drone_replaces_its_links_placeholder() -> None:
    s = DashboardState(demo_config(), FixedClock())
    update = s.apply(topics.drone_status("alpha-1"), DroneStatus(sysid=1, link="alpha"), ns(0))
    assert update is not None and update.new
    assert [d.drone_id for d in s.drone_list()] == ["alpha-1", "bravo"]
    assert s.drones["alpha-1"].link_name == "Drone Alpha"
    assert s.drones["alpha-1"].sysid == 1


def test_ages_come_from_the_message_not_its_arrival() -> None:
    clock = FixedClock()
    s = DashboardState(demo_config(), clock)
    # A cached status from a camera service that died a minute ago.
    s.apply(topics.cam_status("north-gate"), CameraStatus(state="live"), ns(60))
    cam = s.cameras["north-gate"]
    assert cam.status_age(T0) == pytest.approx(60)
    assert cam.condition(T0)[0] == "silent"
    # A clock ahead of ours is never a negative age.
    s.apply(topics.cam_status("east-yard"), CameraStatus(state="live", last_frame_age_s=0.5),
            ns(-100))
    assert s.cameras["east-yard"].status_age(T0) == 0
    clock.t += 2
    assert s.cameras["east-yard"].frame_age(clock.t) == pytest.approx(2.5)


def test_device_floods_are_capped() -> None:
    s = DashboardState(None, FixedClock())
    for i in range(MAX_DEVICES * 2):
        s.apply(topics.cam_status(f"c{i}"), CameraStatus(), ns(0))
        s.apply(topics.drone_telemetry(f"d-{i}"), DroneTelemetry(), ns(0))
    assert len(s.cameras) == MAX_DEVICES
    assert len(s.drones) == MAX_DEVICES
    assert s.bus.odd == 2 * MAX_DEVICES


def test_events_newest_first_and_bounded() -> None:
    s = DashboardState(None, FixedClock())
    for i in range(1000):
        s.apply(topics.alert("x"), Alert(severity="warning", text=f"n{i}"), ns(0))
    assert len(s.events) == 500 and s.events[0].text == "n999"


@settings(max_examples=60, deadline=None)
@given(st.builds(
    CameraStatus, camera_id=st.text(max_size=50), state=st.text(max_size=20),
    fps=st.floats(allow_nan=True, allow_infinity=True),
    kbps=st.floats(allow_nan=True, allow_infinity=True),
    last_frame_age_s=st.none() | st.floats(allow_nan=True, allow_infinity=True)))
def test_any_camera_status_can_be_shown(status: CameraStatus) -> None:
    s = DashboardState(demo_config(), FixedClock())
    s.apply(topics.cam_status("north-gate"), status, ns(1))
    view = s.cameras["north-gate"]
    state, reason = view.condition(T0)
    assert state in ("live", "connecting", "down", "silent", "unknown")
    age = view.frame_age(T0)
    assert age is None or (age >= 0 and not math.isnan(age))


def test_every_kind_of_message_lands() -> None:
    s = scene()
    assert s.cameras["north-gate"].thumb is not None
    assert s.drones["bravo-2"].telemetry_age(T0) == pytest.approx(12)
    assert s.links["sat"].status is not None and s.links["lte"].status is None
    assert len(s.sessions) == 2
    assert [e.kind for e in s.events] == ["alert", "mark", "alert", "alert"]
    assert [e.severity for e in s.events] == ["info", "mark", "warning", "error"]
    assert s.distance_m(s.drones["alpha-1"]) == pytest.approx(429, abs=5)
    s.apply(topics.link_status("new"), LinkStatus(name="New"), ns(0))
    s.apply(topics.svc_health("camera@x"), ServiceHealth(service="camera@x"), ns(0))
    assert "new" in s.links and "camera@x" in s.services


def test_thumbnail_decode_and_halfblocks() -> None:
    pixels = thumbnail.test_pattern(160, 90)
    jpeg = thumbnail.encode_jpeg(pixels)
    decoded = thumbnail.decode(jpeg)
    assert decoded.shape == (90, 160, 3) and decoded.dtype == np.uint8
    lines = thumbnail.halfblocks(decoded, 20, 5)
    assert len(lines) == 5
    assert all(sum(len(seg.text) for seg in line) == 20 for line in lines)
    # 16:9 in 20 columns x 10 pixel rows: 18 wide, centred.
    assert thumbnail.fit(160, 90, 20, 5) == (18, 10)
    assert thumbnail.fit(0, 90, 20, 5) == (0, 0)
    for garbage in (b"", b"\xff\xd8\xff garbage", b"x" * (thumbnail.MAX_JPEG_BYTES + 1)):
        with pytest.raises(thumbnail.ThumbnailError):
            thumbnail.decode(garbage)
    assert len(thumbnail.halfblocks(None, 4, 2)) == 2
    one = thumbnail.halfblocks(np.zeros((1, 1, 3), np.uint8), 3, 3)
    assert len(one) == 3


def test_help_names_every_key() -> None:
    from ui.app import DashboardApp
    from ui.dialogs import ConfirmDialog
    from ui.screens.drone import DroneScreen
    from ui.screens.main import MainScreen
    from ui.widgets.cameras import CameraGrid
    from ui.widgets.drones import DroneTable
    from ui.widgets.table import SyncedTable

    shown = " ".join(k for _, keys in HELP for k, _ in keys)
    names = {"question_mark": "?", "colon": ":", "escape": "esc", "left": "arrows",
             "right": "arrows", "up": "arrows", "down": "arrows"}
    for cls in (DashboardApp, MainScreen, CameraGrid, SyncedTable, DroneTable, DroneScreen,
                ConfirmDialog):
        for binding in cls.BINDINGS:
            for key in binding.key.split(","):  # type: ignore[union-attr]
                assert names.get(key, key) in shown, f"{cls.__name__}: {key} is not in the help"
