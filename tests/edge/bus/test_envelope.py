"""The envelope and the message schema: round trips, tolerance, and refusal."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.bus import envelope
from edge.bus.envelope import MalformedFrame
from edge.bus.messages import MESSAGE_TYPES, Alert, CameraStatus, UplinkSessions, ViewerSession


def test_round_trip_with_blobs() -> None:
    msg = CameraStatus(camera_id="a", state="live", fps=25.0, width=1280, lat=None)
    frames = envelope.encode("cam/a/status", msg, "camera@a", 7, (b"\x00\x01",))
    env = envelope.decode(frames)
    assert env.topic == "cam/a/status"
    assert env.header.type == "cam.status" and env.header.seq == 7
    assert env.header.source == "camera@a" and env.header.ts_ns > 0
    assert env.message == msg
    assert env.blobs == [b"\x00\x01"]


def test_nested_messages_round_trip() -> None:
    msg = UplinkSessions(sessions=[ViewerSession(session_id="s", camera_id="a", kbps=900.0)])
    assert envelope.decode(envelope.encode("uplink/sessions", msg, "u", 1)).message == msg


def test_reader_tolerates_unknown_and_missing_fields() -> None:
    frames = envelope.encode("alert/x", Alert(text="hi"), "s", 1)
    body = msgpack.unpackb(frames[2])
    body["added_in_v2"] = [1, 2]
    del body["severity"]
    frames[2] = msgpack.packb(body)
    env = envelope.decode(frames)
    assert env.message == Alert(text="hi", severity="info")


def test_int_is_accepted_for_float() -> None:
    frames = envelope.encode("cam/a/status", CameraStatus(), "s", 1)
    frames[2] = msgpack.packb({"fps": 25})
    env = envelope.decode(frames)
    assert isinstance(env.message, CameraStatus) and env.message.fps == 25.0


@pytest.mark.parametrize(("frames", "kind"), [
    ([b"t", b"h"], "too few frames"),
    ([b"\xff", msgpack.packb(["alert", 1, "s", 1, 1]), msgpack.packb({})], "bad topic"),
    ([b"t", b"\xc1", msgpack.packb({})], "bad header"),
    ([b"t", msgpack.packb({"type": "alert"}), msgpack.packb({})], "bad header"),
    ([b"t", msgpack.packb(["alert", 1, "s", "x", 1]), msgpack.packb({})], "bad header"),
    ([b"t", msgpack.packb(["alert", 1, "s", 1, 1]), b"\xc1"], "bad body"),
    ([b"t", msgpack.packb(["alert", 1, "s", 1, 1]), msgpack.packb([1])], "bad body"),
    ([b"t", msgpack.packb(["nope", 1, "s", 1, 1]), msgpack.packb({})], "unknown type"),
    ([b"t", msgpack.packb(["alert", 1, "s", 1, 1]), msgpack.packb({"text": 5})], "schema"),
])
def test_malformed_is_named(frames: list[bytes], kind: str) -> None:
    with pytest.raises(MalformedFrame) as e:
        envelope.decode(frames)
    assert e.value.kind == kind


def test_every_message_type_round_trips_with_defaults() -> None:
    for name, cls in MESSAGE_TYPES.items():
        env = envelope.decode(envelope.encode("t", cls(), "s", 1))
        assert env.message == cls(), name


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=64), max_size=6))
def test_random_frames_raise_only_malformed(frames: list[bytes]) -> None:
    try:
        envelope.decode(frames)
    except MalformedFrame:
        pass


def test_header_without_epoch_or_with_more_elements_is_read() -> None:
    body = msgpack.packb({"text": "hi"})
    env = envelope.decode([b"alert/x", msgpack.packb(["alert", 1, "s", 3, 4]), body])
    assert env.header == envelope.Header("alert", 1, "s", 3, 4, 0)
    grown = msgpack.packb(["alert", 1, "s", 3, 4, 5, "added later", {1: "int key"}])
    env = envelope.decode([b"alert/x", grown, body])
    assert env.header == envelope.Header("alert", 1, "s", 3, 4, 5)
    assert env.header.epoch == 5 and env.message == Alert(text="hi")


@pytest.mark.parametrize("header", [
    ["alert", 1, "s", 1, 1, "epoch"],                 # epoch not an int
    ["alert", True, "s", 1, 1],                       # a bool is not a version
    ["alert", 1, b"s", 1, 1],                         # source not text
    ["alert", 1, "s", 1.5, 1],                        # seq not an int
])
def test_header_fields_of_the_wrong_type_are_a_bad_header(header: list[object]) -> None:
    with pytest.raises(MalformedFrame) as e:
        envelope.decode([b"t", msgpack.packb(header), msgpack.packb({})])
    assert e.value.kind == "bad header"
