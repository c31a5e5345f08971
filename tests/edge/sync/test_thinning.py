"""What the bridge sends and sheds, without servers: subjects, the thinner and the outbox."""

from __future__ import annotations

from edge.bus import topics
from edge.sync.bridge import Outbox, Outgoing, Thinner, classify, subject_for


def test_subjects_keep_every_token_plain() -> None:
    assert (subject_for("veh1", "cam/north-gate/main/stream")
            == "veh.veh1.cam.north-gate.main.stream")
    assert subject_for("veh1", "svc/camera@gate/health") == "veh.veh1.svc.camera@gate.health"
    # NATS's separator and wildcards, white space and empty tokens never reach a subject.
    assert subject_for("veh1", "alert/a.b*c>d e//") == "veh.veh1.alert.a_b_c_d_e._._"


def test_what_is_bridged() -> None:
    assert classify(topics.alert("gate")) == "keep"
    assert classify(topics.EVENT_MARK) == "keep"
    assert classify(topics.EVENT_COMMAND) == "keep"
    assert classify(topics.drone_telemetry("alpha-1")) == "telemetry"
    assert classify(topics.UPLINK_SESSIONS) == "state"
    assert classify(topics.RECORDER_STATUS) == "state"
    assert classify(topics.svc_health("bus")) == "state"
    assert classify(topics.cam_thumbnail("gate")) is None
    assert classify(topics.REPLAY_STATUS) is None


def test_telemetry_is_thinned_per_drone_and_state_goes_on_change() -> None:
    now = [0.0]
    thin = Thinner(telemetry_hz=1.0, health_every_s=5.0, clock=lambda: now[0])
    a, b = topics.drone_telemetry("alpha-1"), topics.drone_telemetry("alpha-2")
    sent = []
    for step in range(50):  # 10 Hz for 5 s from two drones
        now[0] = step / 10
        sent += [t for t in (a, b) if thin.admit(t, "telemetry", {"lat": step})]
    assert sent.count(a) == 5 and sent.count(b) == 5
    status = topics.drone_status("alpha-1")
    assert thin.admit(status, "state", {"mode": "GUIDED"})
    assert not thin.admit(status, "state", {"mode": "GUIDED"})
    assert thin.admit(status, "state", {"mode": "RTL"})
    health = topics.svc_health("camera@gate")
    assert thin.admit(health, "state", {"state": "running", "uptime_s": 1.0})
    now[0] += 1
    assert not thin.admit(health, "state", {"state": "running", "uptime_s": 2.0})
    assert thin.admit(health, "state", {"state": "degraded", "uptime_s": 3.0})
    now[0] += 5
    assert thin.admit(health, "state", {"state": "degraded", "uptime_s": 8.0})


def _item(box: Outbox, kind: str, name: str) -> Outgoing:
    return Outgoing(box.next_order(), kind, name, b"", {})  # type: ignore[arg-type]


def test_the_outbox_sheds_oldest_telemetry_then_state_and_never_alerts() -> None:
    box = Outbox(limit=4)
    for name, kind in [("t1", "telemetry"), ("a1", "keep"), ("s1", "state"),
                       ("t2", "telemetry"), ("a2", "keep"), ("t3", "telemetry"),
                       ("a3", "keep"), ("a4", "keep"), ("a5", "keep")]:
        box.put(_item(box, kind, name))
    assert box.dropped == {"telemetry": 3, "state": 1}
    order = []
    while (item := box.take()) is not None:
        order.append(item.subject)
    # Over its limit by alerts alone: they are kept, in the order they came.
    assert order == ["a1", "a2", "a3", "a4", "a5"]


def test_telemetry_follows_the_rate_of_the_link_that_carries_the_tunnel() -> None:
    now = [0.0]
    thin = Thinner(telemetry_hz=1.0, health_every_s=5.0, clock=lambda: now[0],
                   telemetry_hz_by_link={"lte": 4.0, "sat": 0.5})
    drone = topics.drone_telemetry("alpha-1")

    def sent_in_4_s() -> int:
        start, sent = now[0], 0
        for step in range(32):  # 8 Hz for 4 s (steps a float holds exactly)
            now[0] = start + step * 0.125
            sent += thin.admit(drone, "telemetry", {"lat": step})
        now[0] = start + 4.0
        return sent

    assert sent_in_4_s() == 4  # no link known yet: telemetry_hz
    thin.follow_link(topics.link_status("lte"), {"active": True})
    assert sent_in_4_s() == 16
    # A report that another link is not active changes nothing.
    thin.follow_link(topics.link_status("sat"), {"active": False})
    assert sent_in_4_s() == 16
    thin.follow_link(topics.link_status("sat"), {"active": True})
    assert sent_in_4_s() == 2
    # The carrying link went down and no other took over: the default again.
    thin.follow_link(topics.link_status("sat"), {"active": False})
    assert thin.active_link is None and sent_in_4_s() == 4
    # A link the config gives no rate: the default.
    thin.follow_link(topics.link_status("wifi"), {"active": True})
    assert thin.active_link == "wifi" and sent_in_4_s() == 4
