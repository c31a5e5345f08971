"""`edge export mcap`: a whole recorded session as one MCAP file for Foxglove.

**What is in it.** Every message is on one timeline, log time = when the vehicle
received it (wall-clock ns), and written in log-time order:

- ``/video/<camera>/<stream>``: ``foxglove.CompressedVideo``, one message per
  frame, Annex-B H.264 or H.265 (``format`` ``h264``/``h265``), each keyframe
  carrying its parameter sets (what Foxglove's player needs). The MP4 segments
  are demuxed, never decoded: FFmpeg's ``h264_mp4toannexb``/``hevc_mp4toannexb``
  bitstream filters turn MP4's length-prefixed units into start codes and put
  the parameter sets before each keyframe. A stream starts at the keyframe at
  or before the session's start, so its first frame decodes.
- ``/drones/<id>/location``: ``foxglove.LocationFix`` of each drone telemetry
  with a position (Map panel); ``/drones/<id>/pose``: ``foxglove.PoseInFrame``
  in frame ``session_enu`` (3D panel): metres east, north and up of the first
  drone position of the session (channel metadata ``origin_lat``,
  ``origin_lon``, ``origin_alt_m``), over a flat earth, which is good to
  centimetres over a few kilometres; attitude from roll, pitch and yaw (else
  heading), turned from MAVLink's north-east-down to ENU.
- ``/cameras/<id>/location``: ``foxglove.LocationFix`` of each camera's
  configured position (from its ``cam.status``), whenever it changes.
- ``/alerts`` and ``/marks``: ``foxglove.Log``; alerts from the bus (syslog
  severity to log level, ``name`` the alert's source), marks from the catalog's
  marks filed under the session (``name`` the author).
- Every bus topic as it was recorded, message encoding ``json`` with a JSON
  Schema (schema encoding ``jsonschema``, named after the message type): a
  channel per (topic, type), each message ``{"header": {...}, "body": {...},
  "blobs": [...]}`` with bytes as base64 (``contentEncoding: base64``).

The Foxglove schemas are the published ones, from the ``foxglove-sdk``
package's ``foxglove.messages`` (protobuf, schema encoding ``protobuf``: a
``FileDescriptorSet``, named ``foxglove.CompressedVideo`` and so on); its
messages encode themselves. The file is written with the ``mcap`` package's
writer (as the bus log is), not the SDK's own sink: that one logs a failed write
and carries on, while an export must stop on a full disk and say so, and it
cannot set a message's publish time.

**Damage.** A segment or bus log that is missing or cannot be read is skipped
from where it breaks (a torn bus log is read up to its last whole chunk) and
named in :attr:`McapExport.problems`; the rest is exported. Bus messages that
are not a readable envelope are counted (:attr:`McapExport.malformed`), not
exported. The file is written beside `out` and renamed onto it when complete,
so `out` is never half written.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import heapq
import json
import math
import os
import time
import types
import typing
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import IO, Any, Literal

import av
import av.bitstream
from foxglove.messages import (
    CompressedVideo,
    LocationFix,
    Log,
    LogLevel,
    Pose,
    PoseInFrame,
    Quaternion,
    Timestamp,
    Vector3,
)
from mcap.writer import CompressionType, Writer

from edge.bus.envelope import MalformedFrame, decode
from edge.bus.messages import (
    MESSAGE_TYPES,
    Alert,
    CameraStatus,
    DroneTelemetry,
    Message,
    SchemaError,
)
from edge.export import ExportError, Progress, no_progress
from edge.recorder import bus_log
from edge.recorder.catalog import BusLogRow, Catalog, CatalogError, Mark, SegmentRow
from edge.recorder.layout import CATALOG_FILE
from edge.recorder.mp4_segment import TIME_BASE as SEGMENT_TIME_BASE

LIBRARY = "edge export mcap"
VIDEO_TOPIC = "/video/{camera}/{stream}"
DRONE_LOCATION_TOPIC = "/drones/{drone}/location"
DRONE_POSE_TOPIC = "/drones/{drone}/pose"
CAMERA_LOCATION_TOPIC = "/cameras/{camera}/location"
ALERTS_TOPIC = "/alerts"
MARKS_TOPIC = "/marks"
POSE_FRAME = "session_enu"

_BSF = {"h264": "h264_mp4toannexb", "h265": "hevc_mp4toannexb"}
_CHUNK_BYTES = 4 << 20
_EARTH_RADIUS_M = 6_371_008.8
_NS = 1_000_000_000
# Progress is reported on a file done and otherwise at most this often.
_PROGRESS_EVERY_NS = 200_000_000
_LEVELS: dict[str, LogLevel] = {
    "debug": LogLevel.Debug, "info": LogLevel.Info, "notice": LogLevel.Info,
    "warning": LogLevel.Warning, "error": LogLevel.Error, "critical": LogLevel.Fatal,
    "alert": LogLevel.Fatal, "emergency": LogLevel.Fatal}


@dataclass(slots=True)
class McapExport:
    """What an export wrote; `json()` is the CLI's last line."""

    path: Path
    session_id: int
    session_name: str
    start_ns: int
    end_ns: int  # the session's end (now, for a session still open)
    messages: int = 0
    size: int = 0
    video_frames: int = 0
    bus_messages: int = 0
    malformed: int = 0  # bus messages that were not a readable envelope: not exported
    topics: dict[str, int] = field(default_factory=dict)  # topic -> messages
    schemas: dict[str, str] = field(default_factory=dict)  # topic -> schema name
    problems: list[str] = field(default_factory=list)  # files skipped or cut short

    def json(self) -> dict[str, object]:
        return {"path": str(self.path), "session_id": self.session_id,
                "name": self.session_name, "start_ns": self.start_ns, "end_ns": self.end_ns,
                "messages": self.messages, "bytes": self.size,
                "video_frames": self.video_frames, "bus_messages": self.bus_messages,
                "malformed": self.malformed, "topics": self.topics, "schemas": self.schemas,
                "problems": self.problems}


def export_mcap(root: str | os.PathLike[str], session: str, out: str | os.PathLike[str],
                progress: Progress = no_progress) -> McapExport:
    """Export session `session` (its id or name) of the recordings under `root` into the
    MCAP file `out` (replaced if it exists); see the module docstring. Raises ExportError
    (one line) for an unknown session, a session with nothing recorded, or a file that
    cannot be written."""
    root, out = Path(root), Path(out)
    catalog = root / CATALOG_FILE
    if not catalog.is_file():
        raise ExportError(f"no recording catalog in {root} (the recorder has not run there)")
    try:
        cat = Catalog(catalog)
    except CatalogError as e:
        raise ExportError(str(e)) from None
    with cat:
        try:
            s = cat.find_session(session)
        except CatalogError as e:
            raise ExportError(str(e)) from None
        end = s.end_ns if s.end_ns is not None else time.time_ns()
        segments = cat.segments(start_ns=s.start_ns, end_ns=end)
        logs = cat.bus_logs(start_ns=s.start_ns, end_ns=end)
        marks = cat.marks(session_id=s.id)
    result = McapExport(out, s.id, s.name, s.start_ns, end)
    if not segments and not logs and not marks:
        raise ExportError(f"session {s.id} {s.name!r} holds no recordings")
    if not out.parent.is_dir():
        raise ExportError(f"{out.parent}: no such directory")
    partial = out.with_name(f".{out.name}.partial")
    try:
        with open(partial, "wb") as f:
            _Exporter(f, result, progress).run(segments, logs, marks)
            f.flush()
            os.fsync(f.fileno())
        os.replace(partial, out)
    except OSError as e:
        raise ExportError(f"cannot write {out}: {e.strerror or e}") from None
    finally:
        with contextlib.suppress(OSError):
            partial.unlink()
    result.size = out.stat().st_size
    if result.messages == 0:
        out.unlink()
        raise ExportError(f"session {s.id} {s.name!r}: nothing recorded could be read"
                          + (f" ({'; '.join(result.problems)})" if result.problems else ""))
    progress(1.0, "done")
    return result


# ----------------------------------------------------------------------------- the writer

# An item of the merged timeline: (log time, source rank, order within source, write it).
_Item = tuple[int, int, int, Callable[[], None]]


class _Exporter:
    def __init__(self, f: IO[bytes], result: McapExport, progress: Progress) -> None:
        self.result = result
        self.mcap = Writer(f, chunk_size=_CHUNK_BYTES, compression=CompressionType.ZSTD)
        self._schemas: dict[tuple[str, str], int] = {}
        self._channels: dict[tuple[str, str], int] = {}
        self._sequence: dict[int, int] = {}
        self._progress = progress
        self._total = 1
        self._done = 0
        self._last_report = 0
        self._origin: tuple[float, float, float] | None = None
        self._camera_at: dict[str, tuple[float, float]] = {}

    def run(self, segments: list[SegmentRow], logs: list[BusLogRow], marks: list[Mark]
            ) -> None:
        r = self.result
        self.mcap.start(profile="", library=LIBRARY)
        self.mcap.add_metadata("edge.session", {
            "session_id": str(r.session_id), "name": r.session_name,
            "start_ns": str(r.start_ns), "end_ns": str(r.end_ns)})
        self._total = max(1, sum(x.bytes for x in segments) + sum(x.bytes for x in logs))
        streams: dict[tuple[str, str], list[SegmentRow]] = {}
        for seg in segments:
            streams.setdefault((seg.camera, seg.stream), []).append(seg)
        sources: list[Iterator[_Item]] = [self._marks(marks), self._bus(logs)]
        sources += [self._video(rank, segs)
                    for rank, segs in enumerate(streams.values(), start=2)]
        for _, _, _, write in heapq.merge(*sources):
            write()
        self.mcap.finish()  # type: ignore[no-untyped-call]

    def _advance(self, nbytes: int, what: str, force: bool = False) -> None:
        self._done += nbytes
        now = time.monotonic_ns()
        if force or now - self._last_report >= _PROGRESS_EVERY_NS:
            self._last_report = now
            self._progress(min(0.999, self._done / self._total), what)

    def _channel(self, topic: str, schema: str, encoding: str, data: Callable[[], bytes],
                 message_encoding: str, metadata: dict[str, str] | None = None) -> int:
        cid = self._channels.get((topic, schema))
        if cid is None:
            sid = self._schemas.get((schema, encoding))
            if sid is None:
                sid = self._schemas[(schema, encoding)] = self.mcap.register_schema(
                    schema, encoding, data())
            cid = self._channels[(topic, schema)] = self.mcap.register_channel(
                topic, message_encoding, sid, metadata or {})
            self.result.schemas.setdefault(topic, schema)
        return cid

    def _write(self, cid: int, topic: str, log_ns: int, publish_ns: int, data: bytes) -> None:
        seq = self._sequence.get(cid, 0) + 1
        self._sequence[cid] = seq
        self.mcap.add_message(cid, log_ns, data, publish_ns, seq & 0xFFFFFFFF)
        self.result.messages += 1
        self.result.topics[topic] = self.result.topics.get(topic, 0) + 1

    def _foxglove(self, topic: str, msg: Any, log_ns: int, publish_ns: int,
                  metadata: dict[str, str] | None = None) -> None:
        schema = msg.get_schema()
        cid = self._channel(topic, schema.name, schema.encoding, lambda: bytes(schema.data),
                            "protobuf", metadata)
        self._write(cid, topic, log_ns, publish_ns, msg.encode())

    # -- video ----------------------------------------------------------------------------

    def _video(self, rank: int, segments: list[SegmentRow]) -> Iterator[_Item]:
        start = self.result.start_ns
        end = self.result.end_ns
        n = 0
        last = -1
        gop: list[_Item] = []  # the frames since the last keyframe, before the start
        for seg in segments:
            topic = VIDEO_TOPIC.format(camera=seg.camera, stream=seg.stream)
            fmt = "h265" if seg.codec in ("h265", "hevc") else "h264"
            with contextlib.closing(self._frames(seg, fmt)) as frames:
                for wall_dts, wall_pts, data, key, nbytes in frames:
                    self._advance(nbytes, f"video {seg.camera}/{seg.stream}")
                    if wall_dts >= end:
                        return
                    # Decoding order must survive a reader that sorts by log time.
                    wall_dts = max(wall_dts, last + 1)
                    last = wall_dts
                    n += 1
                    item = (wall_dts, rank, n, self._video_writer(
                        topic, seg.camera, fmt, data, wall_dts, wall_pts))
                    if wall_dts < start:
                        # Before the session: kept only as the lead-in its first frame needs.
                        gop = [item] if key else ([*gop, item] if gop else [])
                        continue
                    if gop:
                        yield from gop
                        gop = []
                    yield item

    def _video_writer(self, topic: str, camera: str, fmt: str, data: bytes, wall_dts: int,
                      wall_pts: int) -> Callable[[], None]:
        def write() -> None:
            msg = CompressedVideo(timestamp=_stamp(wall_pts), frame_id=camera, data=data,
                                  format=fmt)
            self._foxglove(topic, msg, wall_dts, wall_pts)
            self.result.video_frames += 1
        return write

    def _frames(self, seg: SegmentRow, fmt: str
                ) -> Generator[tuple[int, int, bytes, bool, int], None, None]:
        """(wall dts, wall pts, Annex-B data, keyframe, bytes read) of each frame."""
        done = 0
        try:
            container = av.open(str(seg.path))
        except (OSError, av.FFmpegError) as e:
            self.result.problems.append(f"{seg.path}: skipped, cannot be read ({e})")
            self._advance(seg.bytes, "video", force=True)
            return
        try:
            stream = container.streams.video[0]
            bsf = av.bitstream.BitStreamFilterContext(_BSF[fmt], stream)
            wall = _wall_clock(seg, stream.time_base or SEGMENT_TIME_BASE)
            for packet in container.demux(stream):
                if packet.size == 0:
                    continue
                done += packet.size
                for out in bsf.filter(packet):
                    dts = out.dts if out.dts is not None else out.pts
                    pts = out.pts if out.pts is not None else dts
                    if dts is None or pts is None:
                        continue
                    yield wall(dts), wall(pts), bytes(out), bool(out.is_keyframe), packet.size
        except (av.FFmpegError, IndexError, ValueError) as e:
            self.result.problems.append(f"{seg.path}: read up to a damaged part ({e})")
        finally:
            container.close()
            self._advance(max(0, seg.bytes - done), "video", force=True)

    # -- bus ------------------------------------------------------------------------------

    def _bus(self, logs: list[BusLogRow]) -> Iterator[_Item]:
        start, end = self.result.start_ns, self.result.end_ns
        n = 0
        for row in logs:
            size = 0
            try:
                for m in bus_log.read(row.path, start_ns=start, end_ns=end):
                    nbytes = sum(len(x) for x in m.frames)
                    size += nbytes
                    self._advance(nbytes, "bus")
                    n += 1
                    yield (m.log_time_ns, 0, n, self._bus_writer(m))
            except (bus_log.BusLogError, OSError) as e:
                self.result.problems.append(f"{row.path}: read up to a damaged part ({e})")
            self._advance(max(0, row.bytes - size), "bus", force=True)

    def _bus_writer(self, m: bus_log.LoggedMessage) -> Callable[[], None]:
        return lambda: self._bus_message(m)

    def _bus_message(self, m: bus_log.LoggedMessage) -> None:
        try:
            env = decode(m.frames, raw=True)
        except MalformedFrame:
            self.result.malformed += 1
            return
        h = env.header
        cls = MESSAGE_TYPES.get(h.type)
        topic = env.topic
        cid = self._channel(topic, h.type, "jsonschema", lambda: _json_schema(h.type, cls),
                            "json")
        doc = {"header": {"type": h.type, "version": h.version, "source": h.source,
                          "seq": h.seq, "ts_ns": h.ts_ns, "epoch": h.epoch},
               "body": _jsonable(env.body),
               "blobs": [base64.b64encode(b).decode() for b in env.blobs]}
        data = json.dumps(doc, separators=(",", ":"), allow_nan=False).encode()
        self._write(cid, topic, m.log_time_ns, m.publish_time_ns, data)
        self.result.bus_messages += 1
        if cls is None:
            return
        try:
            msg = cls.from_body(env.body)
        except SchemaError:
            return
        if isinstance(msg, DroneTelemetry):
            self._drone(msg, m.log_time_ns, h.ts_ns)
        elif isinstance(msg, Alert):
            self._foxglove(ALERTS_TOPIC, Log(
                timestamp=_stamp(h.ts_ns), level=_LEVELS.get(msg.severity, LogLevel.Unknown),
                message=msg.text, name=msg.source or h.source), m.log_time_ns, h.ts_ns)
        elif isinstance(msg, CameraStatus):
            self._camera(msg, m.log_time_ns, h.ts_ns)

    def _drone(self, t: DroneTelemetry, log_ns: int, ts_ns: int) -> None:
        if t.lat is None or t.lon is None or not (math.isfinite(t.lat)
                                                  and math.isfinite(t.lon)):
            return
        alt = t.alt_msl_m if t.alt_msl_m is not None else t.alt_rel_m
        alt = alt if alt is not None and math.isfinite(alt) else 0.0
        heading = t.heading_deg if t.heading_deg is not None else t.yaw_deg
        self._foxglove(DRONE_LOCATION_TOPIC.format(drone=t.drone_id), LocationFix(
            timestamp=_stamp(ts_ns), frame_id=t.drone_id, latitude=t.lat, longitude=t.lon,
            altitude=alt, heading=heading), log_ns, ts_ns)
        if self._origin is None:
            self._origin = (t.lat, t.lon, alt)
        lat0, lon0, alt0 = self._origin
        east = math.radians(t.lon - lon0) * _EARTH_RADIUS_M * math.cos(math.radians(lat0))
        north = math.radians(t.lat - lat0) * _EARTH_RADIUS_M
        yaw = t.yaw_deg if t.yaw_deg is not None else t.heading_deg
        pose = Pose(position=Vector3(x=east, y=north, z=alt - alt0),
                    orientation=_enu_quaternion(t.roll_deg or 0.0, t.pitch_deg or 0.0,
                                                yaw or 0.0))
        self._foxglove(DRONE_POSE_TOPIC.format(drone=t.drone_id),
                       PoseInFrame(timestamp=_stamp(ts_ns), frame_id=POSE_FRAME, pose=pose),
                       log_ns, ts_ns, {"origin_lat": repr(lat0), "origin_lon": repr(lon0),
                                       "origin_alt_m": repr(alt0)})

    def _camera(self, c: CameraStatus, log_ns: int, ts_ns: int) -> None:
        if c.lat is None or c.lon is None or not c.camera_id:
            return
        if self._camera_at.get(c.camera_id) == (c.lat, c.lon):
            return
        self._camera_at[c.camera_id] = (c.lat, c.lon)
        self._foxglove(CAMERA_LOCATION_TOPIC.format(camera=c.camera_id), LocationFix(
            timestamp=_stamp(ts_ns), frame_id=c.camera_id, latitude=c.lat, longitude=c.lon),
            log_ns, ts_ns)

    # -- marks ----------------------------------------------------------------------------

    def _marks(self, marks: list[Mark]) -> Iterator[_Item]:
        for n, mark in enumerate(marks):
            yield (mark.wall_ns, 1, n, self._mark_writer(mark))

    def _mark_writer(self, mark: Mark) -> Callable[[], None]:
        return lambda: self._foxglove(MARKS_TOPIC, Log(
            timestamp=_stamp(mark.wall_ns), level=LogLevel.Info, message=mark.note,
            name=mark.author or "mark"), mark.wall_ns, mark.wall_ns)


# ----------------------------------------------------------------------------- helpers


def _stamp(ns: int) -> Timestamp:
    return Timestamp(ns // _NS, ns % _NS)


def _wall_clock(seg: SegmentRow, tb: Fraction) -> Callable[[int], int]:
    """Ticks of the segment file (time base `tb`) to wall-clock ns.

    The file's timeline runs on the camera's clock, the catalog's start and end on the
    vehicle's receipt times, and the two drift apart by milliseconds over a segment: laid
    end to end unscaled, a segment's last frames would overlap the next segment's first
    ones, and a reader sorting by log time would interleave them, out of decoding order.
    So the file's time is stretched onto [start_ns, end_ns], where consecutive segments
    join exactly.
    """
    length_ns = seg.end_ns - seg.start_ns
    file_ns = seg.duration * SEGMENT_TIME_BASE * _NS
    scale = Fraction(length_ns) / file_ns if file_ns > 0 and length_ns > 0 else Fraction(1)
    if not Fraction(1, 2) <= scale <= 2:
        scale = Fraction(1)  # not a drift: a segment row this exporter does not understand
    factor = tb * _NS * scale
    return lambda ticks: seg.start_ns + round(ticks * factor)


def _enu_quaternion(roll_deg: float, pitch_deg: float, yaw_deg: float) -> Quaternion:
    """MAVLink's attitude (body front-right-down in north-east-down, yaw clockwise from
    north) as a quaternion of body front-left-up in east-north-up."""
    r = math.radians(roll_deg) / 2
    p = -math.radians(pitch_deg) / 2
    y = math.radians(90.0 - yaw_deg) / 2
    cr, sr, cp, sp, cy, sy = math.cos(r), math.sin(r), math.cos(p), math.sin(p), \
        math.cos(y), math.sin(y)
    return Quaternion(x=sr * cp * cy - cr * sp * sy, y=cr * sp * cy + sr * cp * sy,
                      z=cr * cp * sy - sr * sp * cy, w=cr * cp * cy + sr * sp * sy)


def _jsonable(value: Any) -> Any:
    """A msgpack-decoded value as JSON can hold it: bytes as base64, keys as text, NaN
    and infinities as null."""
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k if isinstance(k, str) else str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


_BASE64 = {"type": "string", "contentEncoding": "base64"}


def _json_type(hint: Any) -> dict[str, Any]:
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        args = typing.get_args(hint)
        return {"anyOf": [_json_type(a) for a in args]}
    if hint is type(None):
        return {"type": "null"}
    if origin is Literal:
        # A newer writer may send a word this one does not list: still a string.
        return {"type": "string", "examples": list(typing.get_args(hint))}
    if origin is list:
        (arg,) = typing.get_args(hint) or (Any,)
        return {"type": "array", "items": _json_type(arg)}
    if origin is dict or hint is dict:
        return {"type": "object"}
    if isinstance(hint, type) and issubclass(hint, Message):
        return _object_schema(hint)
    simple = {bool: {"type": "boolean"}, int: {"type": "integer"}, float: {"type": "number"},
              str: {"type": "string"}, bytes: _BASE64}
    if isinstance(hint, type) and hint in simple:
        return dict(simple[hint])
    return {}


def _object_schema(cls: type[Message]) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {"type": "object", "properties": {
        f.name: _json_type(hints[f.name]) for f in dataclasses.fields(cls)}}


def _json_schema(type_name: str, cls: type[Message] | None) -> bytes:
    body: dict[str, Any] = ({"type": "object"} if cls is None else _object_schema(cls))
    if cls is None:
        body["description"] = "a message type this exporter does not know: fields as sent"
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": type_name,
        "description": "an edge bus message: the header, the body (its fields) and the raw "
                       "binary frames after it (base64)",
        "type": "object",
        "properties": {
            "header": {"type": "object", "properties": {
                "type": {"type": "string"}, "version": {"type": "integer"},
                "source": {"type": "string"}, "seq": {"type": "integer"},
                "ts_ns": {"type": "integer", "description": "wall-clock ns when sent"},
                "epoch": {"type": "integer"}},
                "required": ["type", "version", "source", "seq", "ts_ns", "epoch"]},
            "body": body,
            "blobs": {"type": "array", "items": _BASE64}},
        "required": ["header", "body", "blobs"]}
    return json.dumps(schema).encode()
