"""`export_mcap` on a session recorded for real: a simulated camera (RTSP) through the camera
service and the recorder, with drone telemetry, an alert and a mark on the real bus; the
export read back by tools nobody here wrote: mcap's reader, protobuf with Foxglove's published
schema package (and with the descriptors in the file itself, as Foxglove reads them), and
FFmpeg (PyAV) decoding the video messages as Annex-B."""

from __future__ import annotations

import dataclasses
import importlib
import json
import re
from pathlib import Path
from typing import Any, Literal

import av
import pytest
from av.video.codeccontext import VideoCodecContext
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from mcap.reader import make_reader
from mcap.records import Schema

from drivers.sim.camera import SimCamera
from edge.bus import topics
from edge.bus.client import BusClient
from edge.bus.endpoints import Endpoints
from edge.bus.messages import (
    MESSAGE_TYPES,
    Alert,
    CameraStatus,
    DroneTelemetry,
    EventMark,
    RecordCommand,
    Reply,
)
from edge.config import load_config
from edge.export import ExportError
from edge.export.mcap_export import export_mcap
from edge.recorder import bus_log
from edge.recorder.catalog import Catalog
from edge.recorder.layout import CATALOG_FILE
from edge.services.camera import CameraService
from edge.services.recorder import RecorderService
from tests import support
from tests.support import Inbox, eventually
from tests.support.recorder import (
    catalog_marks,
    closed_segments,
    recorder_answers,
    recorder_config,
)

# Functional bounds only (a loaded 2-core machine is slow, not wrong).
LIVE_S = 20.0
SEGMENT_S = 30.0
DRONE = "test-1"
GATE_AT = (48.85837, 2.29448)
FIXES = [(48.8566, 2.3522, 120.0, 0.0), (48.8567, 2.3524, 125.0, 90.0),
         (48.8569, 2.3525, 130.0, 180.0)]


def with_position(config_path: Path) -> None:
    """Give camera `gate` a position in the operator's TOML, as `[[cameras]]` takes it."""
    text = config_path.read_text()
    text = re.sub(r"(?m)^(main = .*)$",
                  rf"\1\nposition = {{ lat = {GATE_AT[0]}, lon = {GATE_AT[1]} }}", text, count=1)
    config_path.write_text(text)


def pb2_class(name: str) -> Any:
    """The message class of Foxglove's published protobuf package for schema `name`."""
    short = name.removeprefix("foxglove.")
    return getattr(importlib.import_module(f"foxglove_schemas_protobuf.{short}_pb2"), short)


def own_class(schema: Schema) -> Any:
    """A message class built from nothing but the schema in the file (a FileDescriptorSet)."""
    fds = descriptor_pb2.FileDescriptorSet.FromString(schema.data)
    pool = descriptor_pool.DescriptorPool()
    pending = list(fds.file)
    while pending:
        ready = [f for f in pending
                 if all(_has_file(pool, d) for d in f.dependency)]
        assert ready, f"{schema.name}: the descriptor set misses a dependency"
        for f in ready:
            pool.AddSerializedFile(f.SerializeToString())
            pending.remove(f)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(schema.name))


def _has_file(pool: descriptor_pool.DescriptorPool, name: str) -> bool:
    try:
        pool.FindFileByName(name)
    except KeyError:
        return False
    return True


def video_decoder(codec: str) -> VideoCodecContext:
    decoder = av.CodecContext.create({"h264": "h264", "h265": "hevc"}[codec], "r")
    assert isinstance(decoder, VideoCodecContext)
    return decoder


def read_export(path: Path) -> tuple[dict[str, tuple[Schema, str]],
                                     list[tuple[str, Schema, int, bytes]]]:
    """(topic -> (schema, message encoding)) and every message as (topic, schema, log time,
    data), in log-time order, by mcap's reader."""
    channels: dict[str, tuple[Schema, str]] = {}
    messages = []
    with open(path, "rb") as f:
        reader = make_reader(f)
        for schema, channel, message in reader.iter_messages(log_time_order=True):
            assert schema is not None, f"{channel.topic} has no schema"
            channels.setdefault(channel.topic, (schema, channel.message_encoding))
            messages.append((channel.topic, schema, message.log_time, message.data))
    return channels, messages


@pytest.mark.timeout(150)
@pytest.mark.parametrize("codec", ["h264", "h265"])
async def test_session_exports_for_foxglove(bus: BusClient, endpoints: Endpoints,
                                            tmp_path: Path, codec: Literal["h264", "h265"]
                                            ) -> None:
    # Parameter sets only out of band: the export must put them before each keyframe.
    camera = SimCamera("gate", main=(640, 360), sub=None, loop_seconds=2.0, codec=codec,
                       repeat_parameter_sets=False)
    await camera.start()
    try:
        config, config_path = recorder_config(tmp_path, {"gate": camera}, segment_seconds=2.0)
        with_position(config_path)
        config = load_config(config_path)
        root = tmp_path / "recordings"
        catalog = root / CATALOG_FILE
        box = Inbox(bus.subscribe(topics.cam_status("gate")))
        async with support.hosted(CameraService, "camera@gate", config, config_path,
                                  endpoints), \
                support.hosted(RecorderService, "recorder", config, config_path, endpoints):
            await box.expect(CameraStatus, lambda m: m.state == "live", within=LIVE_S)
            await recorder_answers(bus)
            n = 0

            def probe() -> bool:
                # Marks are events, never replayed to a late subscriber: repeat until one
                # reaches the recorder.
                nonlocal n
                n += 1
                bus.publish(topics.EVENT_MARK, EventMark(note=f"probe {n}", author="test"))
                return bool(catalog_marks(catalog))

            await eventually(probe, within=15, every=0.2, what="a probe mark in the catalog")
            started = (await bus.request(topics.RECORDER_SERVICE,
                                         RecordCommand(action="start", name="Drill"))).message
            assert isinstance(started, Reply) and started.status == "accepted", started
            sid = started.data["session_id"]
            start_ns = started.data["start_ns"]
            for lat, lon, alt, yaw in FIXES:
                bus.publish(topics.drone_telemetry(DRONE), DroneTelemetry(
                    drone_id=DRONE, sysid=1, lat=lat, lon=lon, alt_msl_m=alt, yaw_deg=yaw,
                    roll_deg=0.0, pitch_deg=0.0))
            bus.publish(topics.alert("gate"), Alert(severity="warning", source="cam/gate",
                                                    text="gate camera reconnected"))
            bus.publish(topics.EVENT_MARK, EventMark(note="gate breached", author="commander"))
            await eventually(lambda: any(m.session_id == sid for m in catalog_marks(catalog)),
                             within=15, what="the session's mark in the catalog")
            await eventually(lambda: [s for s in closed_segments(catalog, "gate")
                                      if s.end_ns > start_ns + 2_000_000_000],
                             within=SEGMENT_S, what="a segment 2 s into the session")
            stopped = (await bus.request(topics.RECORDER_SERVICE,
                                         RecordCommand(action="stop"))).message
            assert isinstance(stopped, Reply) and stopped.status == "accepted", stopped
            end_ns = stopped.data["end_ns"]
    finally:
        await camera.close()

    out = tmp_path / "drill.mcap"
    seen: list[float] = []
    result = export_mcap(root, "drill", out, lambda fraction, what: seen.append(fraction))
    assert result.problems == [] and result.malformed == 0
    assert seen and seen[-1] == 1.0 and seen == sorted(seen), "progress only goes forward"
    channels, messages = read_export(out)
    assert result.messages == len(messages) and result.size == out.stat().st_size

    # Every Foxglove topic under its published schema name, protobuf-encoded.
    expected = {"/video/gate/main": "foxglove.CompressedVideo",
                f"/drones/{DRONE}/location": "foxglove.LocationFix",
                f"/drones/{DRONE}/pose": "foxglove.PoseInFrame",
                "/cameras/gate/location": "foxglove.LocationFix",
                "/alerts": "foxglove.Log", "/marks": "foxglove.Log"}
    for topic, name in expected.items():
        assert topic in channels, f"{topic} missing; the file has {sorted(channels)}"
        schema, encoding = channels[topic]
        assert (schema.name, schema.encoding, encoding) == (name, "protobuf", "protobuf")

    # Each one decodes with Foxglove's schema package, and with the file's own descriptors.
    decoded: dict[str, list[Any]] = {}
    for topic, schema, _, data in messages:
        if schema.encoding != "protobuf":
            continue
        ours = pb2_class(schema.name).FromString(data)
        theirs = own_class(schema).FromString(data)
        assert ours.SerializeToString(deterministic=True) == theirs.SerializeToString(
            deterministic=True)
        decoded.setdefault(topic, []).append(ours)

    fixes = decoded[f"/drones/{DRONE}/location"]
    assert [(f.latitude, f.longitude, f.altitude) for f in fixes] == [f[:3] for f in FIXES]
    poses = decoded[f"/drones/{DRONE}/pose"]
    assert poses[0].frame_id == "session_enu" and poses[0].pose.position.x == 0.0
    # The second fix is 0.0002° of longitude east and 0.0001° of latitude north of the
    # first: 14.63 m east (22.24 m a 1/5000 degree at the equator, times cos 48.86°) and
    # 11.12 m north, 5 m up.
    p = poses[1].pose.position
    assert (p.x, p.y, p.z) == pytest.approx((14.63, 11.12, 5.0), abs=0.01)
    (cam_fix,) = decoded["/cameras/gate/location"]
    assert (cam_fix.latitude, cam_fix.longitude) == GATE_AT
    # Ours, and any the services raised themselves (a loaded machine can make a camera
    # stall): every alert of the session is exported, ours among them.
    (alert,) = [a for a in decoded["/alerts"] if a.name == "cam/gate"
                and a.message == "gate camera reconnected"]
    assert (alert.message, alert.name, alert.level) == ("gate camera reconnected", "cam/gate",
                                                        3)  # WARNING
    assert [(m.message, m.name) for m in decoded["/marks"]] == [("gate breached", "commander")]

    # The video: Annex-B a fresh decoder takes from the first message on, every frame.
    video = decoded["/video/gate/main"]
    assert {v.format for v in video} == {codec} and {v.frame_id for v in video} == {"gate"}
    assert video[0].data.startswith((b"\x00\x00\x00\x01", b"\x00\x00\x01"))
    first = video_decoder(codec)
    pictures = first.decode(av.Packet(video[0].data)) + first.decode(None)
    assert [(f.width, f.height) for f in pictures] == [(640, 360)], \
        "the first message is a keyframe that decodes alone (parameter sets included)"
    decoder = video_decoder(codec)
    count = 0
    for v in video:
        count += len(decoder.decode(av.Packet(v.data)))
    count += len(decoder.decode(None))
    assert count == len(video) == result.video_frames
    video_times = [t for topic, _, t, _ in messages if topic == "/video/gate/main"]
    assert video_times[-1] < end_ns
    assert len([t for t in video_times if t < start_ns]) < 30, \
        "before the session's start only the lead-in from its keyframe (a GOP is 30 frames)"

    # Every bus topic of the session, as JSON with a JSON Schema named after its type.
    recorded: dict[str, str] = {}
    for path in sorted((root / "bus").glob("*.mcap")):
        for m in bus_log.read(path, start_ns=start_ns, end_ns=end_ns):
            recorded.setdefault(m.topic, m.type)
    assert {topics.drone_telemetry(DRONE), topics.EVENT_MARK, topics.alert("gate"),
            topics.cam_status("gate")} <= set(recorded)
    for topic, kind in recorded.items():
        schema, encoding = channels[topic]
        assert (schema.name, schema.encoding, encoding) == (kind, "jsonschema", "json")
        doc = json.loads(schema.data)
        assert doc["type"] == "object" and {"header", "body", "blobs"} <= set(doc["properties"])
        assert set(doc["properties"]["body"]["properties"]) == {
            f.name for f in dataclasses.fields(MESSAGE_TYPES[kind])}
    bodies = [json.loads(data) for topic, _, _, data in messages
              if topic == topics.drone_telemetry(DRONE)]
    assert [(b["body"]["lat"], b["body"]["lon"]) for b in bodies] == [f[:2] for f in FIXES]
    assert bodies[0]["header"]["type"] == "drone.telemetry"

    # A segment gone: the rest is exported and the gap named; an unknown session refused.
    with Catalog(catalog) as cat:
        seg = cat.segments("gate", "main", start_ns=start_ns, end_ns=end_ns)[-1]
    seg.path.unlink()
    again = export_mcap(root, str(sid), tmp_path / "again.mcap")
    assert [p for p in again.problems if str(seg.path) in p], again.problems
    assert again.topics["/marks"] == 1 and again.video_frames < result.video_frames
    with pytest.raises(ExportError, match="no session named 'nope'"):
        export_mcap(root, "nope", tmp_path / "nope.mcap")
    assert not (tmp_path / "nope.mcap").exists()
