"""The centre page's model, fed what the real bridge puts on NATS: contact, the timeline
across vehicles, the device rule, and messages it cannot read."""

from __future__ import annotations

import asyncio
import json

from edge.bus import topics
from edge.bus.messages import (
    Alert,
    CameraStatus,
    CameraStream,
    CommandEvent,
    DroneTelemetry,
    EventMark,
    PushFeed,
    ServiceHealth,
    UplinkPushStatus,
)
from edge.bus.mirror import SILENT_S
from edge.centre.page.state import PageState
from tests.support.centre_page import bridged

T0 = 1_900_000_000.0  # a fixed wall clock (seconds), so ages are exact
NS = 1_000_000_000


class Clock:
    def __init__(self) -> None:
        self.t = T0

    def __call__(self) -> float:
        return self.t


def feed(state: PageState, vehicle: str, topic: str, message: object, at: float,
         seq: int = 1) -> bool:
    out = bridged(vehicle, topic, message, int(at * NS), seq=seq)  # type: ignore[arg-type]
    return state.take(vehicle, seq, out.payload, out.headers)


def test_a_vehicle_is_out_of_contact_when_nothing_came_for_the_timeout() -> None:
    clock = Clock()
    state = PageState(["north", "south"], contact_timeout_s=12.0, clock=clock)
    assert state.snapshot()["vehicles"][0]["contact"] == "never"

    feed(state, "north", topics.svc_health("sync"), ServiceHealth(service="sync"), T0 - 1)
    north = state.vehicle_json("north")
    assert north["contact"] == "in"
    assert north["last_contact_ms"] == int((T0 - 1) * 1000)
    assert state.vehicle_json("south")["contact"] == "never"

    clock.t = T0 + 10.5
    assert state.vehicle_json("north")["contact"] == "in"
    clock.t = T0 + 11.5
    assert state.vehicle_json("north")["contact"] == "out"

    # The backlog after an outage arrives with its own stamps: the newest one counts,
    # and an old one is no contact now.
    feed(state, "north", topics.alert("gate"), Alert(text="during the outage"), T0 - 0.8,
         seq=2)
    assert state.vehicle_json("north")["last_contact_ms"] == int((T0 - 0.8) * 1000)
    assert state.vehicle_json("north")["contact"] == "out"
    feed(state, "north", topics.alert("gate"), Alert(text="older"), T0 - 5, seq=3)
    assert state.vehicle_json("north")["last_contact_ms"] == int((T0 - 0.8) * 1000)
    # A vehicle clock ahead of ours counts as just now, never in the future.
    feed(state, "north", topics.svc_health("sync"), ServiceHealth(service="sync"),
         clock.t + 60, seq=4)
    assert state.vehicle_json("north")["last_contact_ms"] == int(clock.t * 1000)
    assert state.vehicle_json("north")["contact"] == "in"


def test_the_timeline_is_in_the_order_things_happened_across_vehicles() -> None:
    clock = Clock()
    state = PageState(["north", "south"], timeline_max=10, clock=clock)
    # south's live events arrive first; north's backlog (older) arrives after its outage.
    feed(state, "south", topics.alert("mast"), Alert(severity="warning", text="s1"), T0 - 5, 1)
    feed(state, "south", topics.EVENT_MARK, EventMark(note="s2", author="cmdr"), T0 - 3, 2)
    feed(state, "north", topics.alert("gate"), Alert(text="n1"), T0 - 6, 7)
    feed(state, "north", topics.EVENT_COMMAND, CommandEvent(
        service="drone@alpha", subject="alpha-1", action="rtl", by="dashboard",
        status="rejected", detail="not armed"), T0 - 4, 8)
    # Same stamp on both vehicles: vehicle id, then sequence decide, every time.
    feed(state, "north", topics.alert("gate"), Alert(text="n-tie"), T0 - 2, 9)
    feed(state, "south", topics.alert("mast"), Alert(text="s-tie"), T0 - 2, 3)
    # Read again after a resubscription: taken once.
    feed(state, "north", topics.alert("gate"), Alert(text="n1"), T0 - 6, 7)

    lines = [(e["vehicle"], e["kind"], e["text"]) for e in state.snapshot()["timeline"]]
    assert lines == [("north", "alert", "n1"), ("south", "alert", "s1"),
                     ("north", "command", "rtl alpha-1: rejected (not armed)"),
                     ("south", "mark", "s2"), ("north", "alert", "n-tie"),
                     ("south", "alert", "s-tie")]
    entry = state.snapshot()["timeline"][1]
    assert entry["severity"] == "warning" and entry["source"] == "mast"
    assert entry["ts_ms"] == int((T0 - 5) * 1000) and entry["id"] == "south:1"

    # At most timeline_max, the newest kept; one older than all of them is not taken in.
    for i in range(12):
        feed(state, "south", topics.alert("mast"), Alert(text=f"late{i}"), T0 + i, 100 + i)
    feed(state, "north", topics.alert("gate"), Alert(text="ancient"), T0 - 3600, 50)
    texts = [e["text"] for e in state.snapshot()["timeline"]]
    assert texts == [f"late{i}" for i in range(2, 12)]


def test_devices_age_by_the_vehicles_stamps_with_the_mirrors_rule() -> None:
    clock = Clock()
    state = PageState(["north"], clock=clock, uplinks=["north"])
    feed(state, "north", topics.cam_status("gate"), CameraStatus(
        camera_id="gate", name="Gate", state="live", codec="h264", width=640, height=360),
        T0 - 1, 1)
    # Bytes travel as base64 (parameter sets): read back, the stream is known.
    feed(state, "north", topics.cam_stream("gate", "sub"), CameraStream(
        camera_id="gate", profile="sub", parameter_sets=b"\x00\x00\x00\x01gA"), T0 - 1, 2)
    feed(state, "north", topics.drone_telemetry("alpha-1"), DroneTelemetry(
        drone_id="alpha-1", lat=30.5, lon=114.3, battery_pct=81.0), T0 - 1, 3)
    north = state.vehicle_json("north")
    (cam,) = north["cameras"]
    assert (cam["name"], cam["state"], cam["condition"], cam["profiles"]) == (
        "Gate", "live", "live", ["sub"])
    (drone,) = north["drones"]
    assert (drone["condition"], drone["battery_pct"], drone["lat"]) == ("live", 81.0, 30.5)
    assert north["uplink"] is True

    clock.t = T0 + SILENT_S + 0.5
    north = state.vehicle_json("north")
    assert north["cameras"][0]["condition"] == "silent"
    assert north["cameras"][0]["state"] == "live"  # what it last said, shown with its age
    assert north["drones"][0]["condition"] == "silent"


def test_a_camera_pushed_up_shows_its_push_state() -> None:
    clock = Clock()
    state = PageState(["north"], clock=clock)
    feed(state, "north", topics.cam_status("gate"), CameraStatus(
        camera_id="gate", name="Gate", state="live"), T0 - 1, 1)
    feed(state, "north", topics.cam_status("yard"), CameraStatus(
        camera_id="yard", name="Yard", state="live"), T0 - 1, 2)
    assert [c["push"] for c in state.vehicle_json("north")["cameras"]] == [None, None]
    feed(state, "north", topics.UPLINK_PUSH_STATUS, UplinkPushStatus(
        whip_url="https://centre/whip", feeds=[
            PushFeed(camera_id="gate", state="retrying", retries=2,
                     last_error="connection refused", profile="sub"),
            PushFeed(camera_id="yard", state="idle")]), T0 - 0.5, 3)
    gate, yard = state.vehicle_json("north")["cameras"]
    assert gate["push"] is not None
    assert (gate["push"]["state"], gate["push"]["retries"], gate["push"]["last_error"]) == (
        "retrying", 2, "connection refused")
    assert yard["push"] is None  # idle: not pushed
    feed(state, "north", topics.UPLINK_PUSH_STATUS, UplinkPushStatus(feeds=[]), T0, 4)
    assert [c["push"] for c in state.vehicle_json("north")["cameras"]] == [None, None]


def test_unreadable_messages_are_skipped_counted_and_the_page_goes_on() -> None:
    clock = Clock()
    state = PageState(["north"], clock=clock)
    good = bridged("north", topics.cam_status("gate"),
                   CameraStatus(camera_id="gate", state="live"), int(T0 * NS))
    h = good.headers
    bad = [
        (b"{not json", h),
        (b"[1, 2]", h),
        (good.payload, {**h, "Edge-Type": "no.such.type"}),
        (good.payload, {k: v for k, v in h.items() if k != "Edge-Type"}),
        (good.payload, {k: v for k, v in h.items() if k != "Edge-Topic"}),
        (good.payload, {**h, "Edge-Ts": "yesterday"}),
        (good.payload, None),
        (json.dumps({"camera_id": "gate", "width": "wide"}).encode(), h),
        (json.dumps({"camera_id": "gate", "parameter_sets": "***"}).encode(),
         {**h, "Edge-Type": "cam.stream", "Edge-Topic": "cam/gate/main/stream"}),
        (b"\xff\xfe", h),
    ]
    for i, (data, headers) in enumerate(bad):
        assert not state.take("north", i + 1, data, headers)
    assert not state.take("nobody", 99, good.payload, good.headers)

    view = state.vehicle_json("north")
    assert view["cameras"] == []
    assert view["skipped"] == {"bad JSON": 2, "body is not a JSON object": 1,
                               "unknown Edge-Type": 2, "no Edge-Topic header": 2,
                               "no or bad Edge-Ts header": 1,
                               "body does not fit its type": 1, "bad base64": 1}
    # Stamped but unreadable is still contact: the link works.
    assert view["contact"] == "in"

    assert state.take("north", 50, good.payload, good.headers)
    assert [c["id"] for c in state.vehicle_json("north")["cameras"]] == ["gate"]
    json.dumps(state.snapshot())  # everything the page is sent is plain JSON


async def test_a_reader_is_told_which_vehicles_changed_and_the_new_entries() -> None:
    clock = Clock()
    state = PageState(["north", "south"], clock=clock)
    watcher = state.watch()
    waiting = asyncio.ensure_future(watcher.next(coalesce_s=0.05))
    await asyncio.sleep(0.01)
    assert not waiting.done()
    for i in range(20):  # a burst: one wake-up for all of it
        feed(state, "north", topics.cam_status("gate"),
             CameraStatus(camera_id="gate", frames=i), T0, i + 1)
    feed(state, "south", topics.alert("mast"), Alert(text="smoke"), T0, 1)
    vehicles, entries, everything = await asyncio.wait_for(waiting, 5)
    assert vehicles == {"north", "south"}
    assert [e.text for e in entries] == ["smoke"] and not everything
    watcher.close()
    feed(state, "south", topics.alert("mast"), Alert(text="unwatched"), T0, 2)
    assert not watcher.vehicles and not watcher.entries
