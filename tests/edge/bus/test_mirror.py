"""The vehicle model from the bus: ids, ages, the staleness rule, replays, bounds.

The replay test runs against a real broker (only it produces replays); the rest
feed the mirror envelopes with chosen stamps, which is what it reads from the
wire, so that ages are exact.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from edge.bus import topics
from edge.bus.client import BusClient, Subscription
from edge.bus.envelope import Envelope, Header
from edge.bus.messages import (
    CameraStatus,
    CameraStream,
    CameraThumbnail,
    DroneStatus,
    DroneTelemetry,
    LinkStatus,
    Message,
    ServiceHealth,
    UplinkSessions,
    ViewerSession,
)
from edge.bus.mirror import (
    MAX_DEVICES,
    MAX_SESSIONS,
    SILENT_S,
    CameraRecord,
    Mirror,
    freshness,
    known,
)
from edge.config import parse_config
from edge.uplink.state import UplinkState
from ui.state import DashboardState

pytestmark = pytest.mark.timeout(30)

NOW = 1_790_000_000.0


def clock() -> float:
    return NOW


def ns(seconds_ago: float, now: float = NOW) -> int:
    return int((now - seconds_ago) * 1e9)


def envelope(topic: str, message: Message, ts_ns: int, replayed: bool = False,
             blobs: list[bytes] | None = None) -> Envelope:
    header = Header(message.TYPE, message.VERSION, "test", 1, ts_ns)
    return Envelope(topic, header, message, message.to_body(), blobs or [], replayed=replayed)


# -- the staleness rule ---------------------------------------------------------------------

def test_ages_run_from_the_producers_stamp() -> None:
    m = Mirror(clock=clock)
    # The broker's cached status of a camera service that died a minute ago: old at once.
    m.apply(topics.cam_status("a"), CameraStatus(state="live"), ns(60))
    assert m.cameras["a"].status is not None and m.cameras["a"].status.age(NOW) == 60
    assert m.cameras["a"].condition(NOW) == "silent"
    # A producer's clock ahead of ours is "just now", never a negative age.
    m.apply(topics.cam_status("b"), CameraStatus(state="live"), ns(-100))
    assert m.cameras["b"].status is not None and m.cameras["b"].status.age(NOW) == 0
    # No stamp at all: heard now.
    m.apply(topics.cam_status("c"), CameraStatus(state="down"))
    assert m.cameras["c"].condition(NOW) == "down"


def test_one_rule_for_silent_and_for_colours() -> None:
    record = CameraRecord("a")
    assert record.condition(NOW) == "unknown"  # never heard of
    m = Mirror(cameras=["a"], clock=clock)
    for age, expected in ((0.0, "live"), (SILENT_S, "live"), (SILENT_S + 0.5, "silent")):
        m.apply(topics.cam_status("a"), CameraStatus(state="live"), ns(age))
        assert m.cameras["a"].condition(NOW) == expected, age
    m.apply(topics.cam_status("a"), CameraStatus(state="rebooting"), ns(0))  # type: ignore[arg-type]
    assert m.cameras["a"].condition(NOW) == "unknown"  # a word this reader does not know
    m.apply(topics.cam_status("a"), CameraStatus(state=" LIVE "), ns(0))  # type: ignore[arg-type]
    assert m.cameras["a"].condition(NOW) == "live"
    assert [freshness(a) for a in (None, 0.0, 3.0, 3.1, 10.0, 10.1)] == [
        "none", "fresh", "fresh", "stale", "stale", "old"]
    assert known("Warning", ("info", "warning")) == "warning" and known(3, ("3",)) is None


def test_a_drone_is_silent_only_when_neither_status_nor_telemetry_comes() -> None:
    m = Mirror(clock=clock)
    m.apply(topics.drone_telemetry("alpha-1"), DroneTelemetry(), ns(1))
    assert m.drones["alpha-1"].condition(NOW) == "live"  # telemetry alone: it flies
    m.apply(topics.drone_status("alpha-1"), DroneStatus(state="lost"), ns(SILENT_S + 5))
    assert m.drones["alpha-1"].condition(NOW) == "lost"
    m.apply(topics.drone_telemetry("alpha-1"), DroneTelemetry(), ns(SILENT_S + 1))
    assert m.drones["alpha-1"].condition(NOW) == "silent"


def test_the_dashboard_and_the_centre_agree() -> None:
    """The same messages, the same states: the dashboard's words and the uplink's page's."""
    config = parse_config({"cameras": [
        {"id": cam, "name": cam, "main": f"rtsp://127.0.0.1:1/{cam}"}
        for cam in ("fresh", "quiet", "dead", "down", "odd", "never")]})
    now = time.time()
    dashboard, centre = DashboardState(config), UplinkState(config)
    for cam, state, age in (("fresh", "live", 0.5), ("quiet", "live", SILENT_S - 1),
                            ("dead", "live", 60), ("down", "down", 1), ("odd", "booting", 1)):
        env = envelope(topics.cam_status(cam),
                       CameraStatus(camera_id=cam, state=state),  # type: ignore[arg-type]
                       ns(age, now))
        dashboard.take(env)
        centre.apply(env)
    shown = {cam: view.condition(time.time())[0] for cam, view in dashboard.cameras.items()}
    assert shown == {"fresh": "live", "quiet": "live", "dead": "silent", "down": "down",
                     "odd": "unknown", "never": "unknown"}
    assert {c["id"]: c["state"] for c in centre.snapshot()["cameras"]} == shown


# -- replays ------------------------------------------------------------------------------

async def heard(sub: Subscription, topic: str, within: float = 10.0) -> Envelope:
    async def find() -> Envelope:
        while (env := await sub.recv()).topic != topic:
            pass
        return env
    return await asyncio.wait_for(find(), within)


async def test_a_replay_of_the_cache_changes_nothing(bus: BusClient) -> None:
    topic = topics.cam_status("a")
    first, mirror = bus.subscribe(topics.CAM), Mirror()

    async def first_hears() -> Envelope:
        while True:  # the slow joiner: until the subscription is wired to the broker
            bus.publish(topic, CameraStatus(camera_id="a", state="live"))
            try:
                return await heard(first, topic, 0.2)
            except TimeoutError:
                continue

    env = await asyncio.wait_for(first_hears(), 10)
    change = mirror.take(env)
    assert change is not None and change.new and change.kind == "camera"
    taken = mirror.cameras["a"].status
    # A late subscriber makes the broker replay the cache to every cam/ subscriber.
    late, late_mirror = bus.subscribe(topics.CAM), Mirror()
    again = await heard(first, topic)
    assert again.replayed
    assert mirror.take(again) is None and mirror.cameras["a"].status is taken
    # For the late subscriber the cached status is news: it sees the camera at once.
    first_sight = await heard(late, topic)
    assert not first_sight.replayed
    assert late_mirror.take(first_sight) is not None and "a" in late_mirror.cameras


def test_the_uplink_skips_replays_too() -> None:
    config = parse_config({"cameras": [{"id": "a", "name": "A",
                                        "main": "rtsp://127.0.0.1:1/a"}]})
    centre = UplinkState(config)
    watcher = centre.watch()
    centre.apply(envelope(topics.cam_status("a"), CameraStatus(camera_id="a", state="down"),
                          time.time_ns(), replayed=True))
    assert centre.cameras["a"].status is None and not watcher._pending
    centre.apply(envelope(topics.cam_status("a"), CameraStatus(camera_id="a", state="down"),
                          time.time_ns()))
    assert centre.cameras["a"].state == "down" and ("camera", "a") in watcher._pending


# -- which device, and how many ---------------------------------------------------------------

def test_the_topic_names_the_device_else_the_message() -> None:
    m = Mirror(clock=clock)
    m.apply(topics.cam_status("north"), CameraStatus(camera_id="south"), ns(0))
    m.apply("cam/status", CameraStatus(camera_id="east"), ns(0))  # no device in the topic
    m.apply(topics.svc_health("camera@north"), ServiceHealth(service="other"), ns(0))
    assert list(m.cameras) == ["north", "east"] and list(m.services) == ["camera@north"]
    for bad in ("", "x" * 65, "a\x1b[2Jb", "a\u202eb"):
        m.apply(topics.cam_status(bad), CameraStatus(camera_id=bad), ns(0))
    assert list(m.cameras) == ["north", "east"] and m.odd == 4


def test_device_counts_are_bounded() -> None:
    m = Mirror(cameras=["configured"], links=["sat"], clock=clock)
    for i in range(MAX_DEVICES * 2):
        m.apply(topics.cam_status(f"c{i}"), CameraStatus(), ns(0))
        m.apply(topics.drone_status(f"d-{i + 1}"), DroneStatus(), ns(0))
        m.apply(topics.link_status(f"l{i}"), LinkStatus(), ns(0))
    assert len(m.cameras) == len(m.drones) == len(m.links) == MAX_DEVICES
    assert "configured" in m.cameras and "sat" in m.links  # the config's ids count too
    assert m.odd == 3 * MAX_DEVICES + 2
    # A device already held is still updated when the count is full.
    m.apply(topics.cam_status("configured"), CameraStatus(state="down"), ns(0))
    assert m.cameras["configured"].condition(NOW) == "down"
    sessions = [ViewerSession(session_id=str(i)) for i in range(MAX_SESSIONS + 10)]
    m.apply(topics.UPLINK_SESSIONS, UplinkSessions(sessions=sessions), ns(0))
    assert m.sessions is not None and len(m.sessions.message.sessions) == MAX_SESSIONS


def test_streams_and_thumbnails() -> None:
    m = Mirror(clock=clock)
    first = m.apply(topics.cam_stream("a", "main"), CameraStream(profile="main", codec="h264"))
    again = m.apply(topics.cam_stream("a", "main"), CameraStream(profile="main", codec="h265"))
    assert first is not None and first.new and first.replaced is None
    assert again is not None and not again.new
    assert isinstance(again.replaced, CameraStream) and again.replaced.codec == "h264"
    assert m.cameras["a"].streams["main"].codec == "h265"
    # A thumbnail is its picture: without one there is nothing to keep.
    assert m.apply(topics.cam_thumbnail("a"), CameraThumbnail()) is None and m.odd == 1
    m.apply(topics.cam_thumbnail("a"), CameraThumbnail(captured_ns=5), blobs=[b"\xff\xd8"])
    assert m.cameras["a"].jpeg == b"\xff\xd8"
    assert m.apply(topics.cam_stream("a", "sub"), CameraStream(profile="")) is None


def test_drone_ids_are_built_and_parsed_in_one_place() -> None:
    assert topics.drone_id("alpha", 1) == "alpha-1"
    assert topics.parse_drone_id("alpha-1") == ("alpha", 1)
    assert topics.parse_drone_id("north-yard-12") == ("north-yard", 12)
    for other in ("alpha", "-1", "alpha-0", "alpha-256", "alpha-²", "alpha-x", ""):
        assert topics.parse_drone_id(other) is None, other
