"""A synthetic recorded session: in seconds, the recordings directory that N cameras and
the bus, recorded for M minutes, would leave behind (for ``edge bench replay --synthetic``).

Every file is written by the recorder's own code and every row by its catalog, so a
replay reads it through the same code as a real recording; only the clock is ours.
Times are wall-clock ns spread over the M minutes ending now (or `end_ns`), stamped as
the recorder would have stamped them, not the time of writing.

- **Video** (as :class:`~edge.recorder.stream_recorder.StreamRecorder` does it): per
  camera a :class:`~edge.recorder.mp4_segment.SegmentWriter` under ``video/``, with the
  recorder's `segment_seconds`, fragments of ``min(1 s, segment_seconds)`` and its
  ``MAX_GAP_S``, fed :class:`~edge.media.wire.MediaFrame` s stamped as the media plane
  stamps a camera's units (camera pts at 30 fps, `received_ns` on the synthetic clock);
  each segment it closes goes to :meth:`Catalog.add_segment` from ``on_segment``,
  keyframe index included. The units are the bench's encoded loop
  (:func:`edge.bench.record.encoded_units`: the simulated camera's 1280x720 30 fps
  H.264, ~2 Mbit/s, 1 s GOP, parameter sets before each keyframe), repeated: remuxed,
  never re-encoded, as the recorder remuxes. Cameras start 1/(30 N) s apart, as
  unsynchronised cameras do, and are written in lockstep, as the recorder's threads
  write them. Not as the recorder: no ``fdatasync`` per fragment (durability is not
  what this is for; the bytes are the same).
- **Bus** (as :class:`~edge.recorder.bus_recorder.BusRecorder` does it): a
  :class:`~edge.recorder.bus_log.BusLogWriter` file under ``bus/`` per period, rotated on
  multiples of `segment_seconds` since the epoch, each registered with
  :meth:`Catalog.add_bus_log` when closed. Its messages are envelopes as the services
  publish them (header stamped by the publisher, logged 0.3 ms later): per camera
  ``cam/<id>/status`` (live) and ``svc/camera@<id>/health`` at 1 Hz, a
  ``cam/<id>/thumbnail`` every 2 s (one JPEG of the loop's keyframe), and its
  ``cam/<id>/main/stream`` announcement once, on its first keyframe, as the camera
  service announces it (the live vehicle's endpoint, which the replay rewrites; codec,
  size, profile-level-id and parameter sets from the SPS); the recorder's
  ``recorder/status`` and ``svc/recorder/health`` and the broker's ``svc/bus/health``
  at 1 Hz; `marks` ``event/mark`` (filed in the catalog too, as the recorder files
  them) and `alerts` ``alert/bench`` spread over the session.
- **Session**: a named session in the catalog over [start, end]. The recording starts
  :data:`LEAD_S` before it: the cameras were up and announced when someone pressed
  record, as on a vehicle.

The directory is taken with the recorder's lock while it is written, so a recorder
(or ``edge record reindex``) cannot use it meanwhile.
"""

from __future__ import annotations

import dataclasses
import os
import random
import time
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import msgpack

from edge.bench.record import FPS, MAIN, PTS_STEP, bench_camera_id, encoded_units
from edge.bus import envelope, topics
from edge.bus.endpoints import Endpoints
from edge.bus.messages import (
    Alert,
    CameraStatus,
    CameraStream,
    CameraThumbnail,
    EventMark,
    Message,
    RecorderStatus,
    RecorderStream,
    ServiceHealth,
)
from edge.config import BusConfig
from edge.media.wire import MediaFrame
from edge.recorder.bus_log import BusLogWriter
from edge.recorder.catalog import Catalog
from edge.recorder.layout import BUS_DIR, CATALOG_FILE, VIDEO_DIR, new_file
from edge.recorder.mp4_segment import SegmentInfo, SegmentWriter
from edge.recorder.recovery import lock_recordings, unlock_recordings
from edge.recorder.stream_recorder import MAX_GAP_S

#: The recording starts this long before the session (cameras up, streams announced).
LEAD_S = 2.0
#: From a publisher's stamp to the recorder's log time.
LOG_DELAY_NS = 300_000
SESSION_NAME = "bench synthetic"
_SECOND = 1_000_000_000
_FRAME_NS = Fraction(_SECOND, FPS)
_TIME_BASE = Fraction(1, 90_000)
_STATUS_EVERY_S = 1
_THUMBNAIL_EVERY_S = 2
_packb = msgpack.Packer(use_bin_type=True).pack


@dataclasses.dataclass(frozen=True, slots=True)
class SyntheticSession:
    catalog: Path  # root/catalog.sqlite
    session_id: int
    start_ns: int  # the named session's range, wall-clock ns
    end_ns: int
    segments: int  # MP4 segment files
    units: int  # video units written
    bus_logs: int  # MCAP files
    bus_messages: int
    bytes: int  # in the segment and bus log files


def write_synthetic_session(root: Path, cameras: int, minutes: float, *,
                            segment_seconds: float = 60.0, end_ns: int | None = None,
                            marks: int = 4, alerts: int = 3, seed: int = 1
                            ) -> SyntheticSession:
    """Write the recordings of `cameras` cameras (``cam01``...) and the bus for `minutes`
    minutes ending at `end_ns` (default now) into `root`, as the recorder lays them out
    (see the module docstring), with a named session over them. `ValueError` for impossible
    arguments, `RuntimeError` when another recorder holds `root`; what the recorder's
    writers raise (`OSError`, `RecordingWriteError`, ...) when the disk fails."""
    if cameras < 1:
        raise ValueError(f"cameras must be at least 1, not {cameras}")
    if not minutes > 0:
        raise ValueError(f"minutes must be more than 0, not {minutes:g}")
    if not segment_seconds > 0:
        raise ValueError(f"segment_seconds must be more than 0, not {segment_seconds:g}")
    end = time.time_ns() if end_ns is None else end_ns
    start = end - round(minutes * 60 * _SECOND)
    recording = start - round(LEAD_S * _SECOND)
    for sub in (VIDEO_DIR, BUS_DIR):
        (root / sub).mkdir(parents=True, exist_ok=True)
    lock = lock_recordings(root)
    if lock is None:
        raise RuntimeError(f"another recorder (or `edge record reindex`) is using {root}")
    try:
        with Catalog(root / CATALOG_FILE) as catalog:
            session = catalog.start_session(SESSION_NAME, start)
            units, extradata = encoded_units()
            ids = [bench_camera_id(i) for i in range(cameras)]
            # Camera i's first unit arrives i/(30 N) s after camera 0's.
            offsets = [recording + round(i * _FRAME_NS / cameras) for i in range(cameras)]
            written = _write_video(root, catalog, ids, offsets, end, units, segment_seconds)
            bus = _Bus(ids, offsets, units, extradata, random.Random(seed))
            logs, messages = _write_bus(root, catalog, bus.messages(
                recording, start, end, marks, alerts, session.id, written), segment_seconds)
            for at, note, author in bus.marks:
                # As the recorder files an `event/mark`: at its header's time.
                catalog.add_mark(at, note, author)
            catalog.stop_session(end)
            size = catalog.total_bytes()
            segments = len(catalog.segments())
    finally:
        unlock_recordings(lock)
    return SyntheticSession(root / CATALOG_FILE, session.id, start, end, segments,
                            sum(written.values()), logs, messages, size)


# ----------------------------------------------------------------------------- video


def _write_video(root: Path, catalog: Catalog, ids: list[str], offsets: list[int], end: int,
                 units: list[tuple[bytes, bool]], segment_seconds: float) -> dict[str, int]:
    """Every camera's units up to `end`, in lockstep; units written per camera."""

    def register(info: SegmentInfo) -> None:
        catalog.add_segment(info)

    writers = [SegmentWriter(root / VIDEO_DIR, cid, "main", segment_seconds=segment_seconds,
                             fragment_seconds=min(1.0, segment_seconds),
                             max_gap_seconds=MAX_GAP_S, fsync=False, on_segment=register)
               for cid in ids]
    counts = [int((end - first) / _FRAME_NS) + 1 for first in offsets]
    total = max(counts)
    epochs = [random.Random(cid).getrandbits(32) for cid in ids]
    loop = len(units)
    try:
        for k in range(total):
            data, keyframe = units[k % loop]
            pts = k * PTS_STEP
            step = int(k * _FRAME_NS)
            for i, writer in enumerate(writers):
                if k < counts[i]:
                    writer.write(MediaFrame(epochs[i], k, keyframe, pts, pts, _TIME_BASE,
                                            "h264", offsets[i] + step, data))
    finally:
        for writer in writers:
            writer.close()
    return {cid: w.counters.units_written for cid, w in zip(ids, writers, strict=True)}


# ----------------------------------------------------------------------------- bus


def _write_bus(root: Path, catalog: Catalog, messages: Iterator[tuple[int, list[bytes]]],
               segment_seconds: float) -> tuple[int, int]:
    """The messages (log time, frames; in log-time order) into bus logs rotated as the
    recorder rotates them; (files, messages)."""
    period = max(1, round(segment_seconds * 1e9))
    writer = BusLogWriter()
    files = count = 0
    next_rotate: int | None = None

    def finish() -> None:
        done = writer.close()
        if done is not None:
            catalog.add_bus_log(done.path, first_ns=done.first_ns, last_ns=done.last_ns,
                                messages=done.messages, size=done.size)

    try:
        for log_ns, frames in messages:
            if next_rotate is None or log_ns >= next_rotate:
                # The recorder opens the next file at its first wake-up past the boundary.
                finish()
                opened = log_ns if next_rotate is None else next_rotate
                writer.open(new_file(root / BUS_DIR, opened, ".mcap"))
                files += 1
                next_rotate = (opened // period + 1) * period
            writer.write(frames, log_ns)
            count += 1
    finally:
        finish()
    return files, count


class _Bus:
    """What the vehicle's services publish on the bus, stamped on the synthetic clock."""

    def __init__(self, ids: list[str], offsets: list[int], units: list[tuple[bytes, bool]],
                 extradata: bytes, rng: random.Random) -> None:
        from drivers.rtsp.sps import parse_h264_sps
        from edge.media.thumbnail import make_thumbnail

        self.ids = ids
        self.offsets = offsets
        self.rng = rng
        self._epochs: dict[str, int] = {}
        self._seq: dict[tuple[str, str], int] = {}
        keyframe = next(data for data, key in units if key)
        self.jpeg = make_thumbnail(keyframe, "h264")
        sps = next(nal for nal in extradata.split(b"\x00\x00\x00\x01") if nal)
        self.sps = parse_h264_sps(sps)
        self.extradata = extradata
        self.kbps = round(sum(len(d) for d, _ in units) * 8 / (len(units) / FPS) / 1000, 1)
        self.live = Endpoints.from_config(BusConfig(), Path(BusConfig().runtime_dir))
        # Each camera's status, health and thumbnail come at its own moment of the second.
        self.phase = [rng.randrange(0, _SECOND) for _ in ids]
        self.marks: list[tuple[int, str, str]] = []  # (time, note, author) once published

    def frames(self, topic: str, message: Message, source: str, ts_ns: int,
               blobs: tuple[bytes, ...] = ()) -> list[bytes]:
        """The envelope `source` would have published at `ts_ns`."""
        epoch = self._epochs.setdefault(source, self.rng.getrandbits(32))
        seq = self._seq[(source, topic)] = self._seq.get((source, topic), 0) + 1
        frames = envelope.encode(topic, message, source, seq, blobs, epoch)
        # `encode` stamps the time of writing; the header is what the publisher would
        # have sent then: the same array with its own stamp.
        header = msgpack.unpackb(frames[1])
        header[4] = ts_ns
        frames[1] = _packb(header)
        return frames

    def messages(self, recording: int, start: int, end: int, marks: int, alerts: int,
                 session_id: int, written: dict[str, int]
                 ) -> Iterator[tuple[int, list[bytes]]]:
        """(log time, frames) in log-time order over [recording, end]."""
        events = self._events(start, end, marks, alerts)
        seconds = (end - recording) // _SECOND + 1
        for s in range(seconds):
            t = recording + s * _SECOND
            due: list[tuple[int, list[bytes]]] = []
            if s == 0:
                for i, cid in enumerate(self.ids):
                    due.append(self._announce(cid, self.offsets[i] + 2_000_000))
            for i, cid in enumerate(self.ids):
                at = t + self.phase[i]
                frames = round((at - self.offsets[i]) / _FRAME_NS)
                due.append(self._status(i, at, max(0, frames)))
                due.append(self._health(f"camera@{cid}", at + 1_500_000, s))
                if (s + i) % _THUMBNAIL_EVERY_S == 0:
                    due.append(self._thumbnail(cid, at + 40_000_000))
            due.append(self._recorder(t + 400_000_000, s, start, session_id, written,
                                      recording, end))
            due.append(self._health("recorder", t + 401_000_000, s))
            due.append(self._health("bus", t + 900_000_000, s))
            while events and events[0][0] < t + _SECOND:
                due.append(events.pop(0))
            for ts, frames_ in sorted((x for x in due if x[0] <= end), key=lambda x: x[0]):
                yield ts + LOG_DELAY_NS, frames_

    def _events(self, start: int, end: int, marks: int, alerts: int
                ) -> list[tuple[int, list[bytes]]]:
        span = end - start
        found: list[tuple[int, list[bytes]]] = []
        for k in range(marks):
            at = start + span * (2 * k + 1) // (2 * marks) + 123_000_000
            note = f"synthetic mark {k + 1} of {marks}"
            self.marks.append((at, note, "bench"))
            found.append((at, self.frames(topics.EVENT_MARK, EventMark(
                note=note, author="bench"), "dashboard", at)))
        for k in range(alerts):
            at = start + span * (k + 1) // (alerts + 1) + 456_000_000
            found.append((at, self.frames(topics.alert("bench"), Alert(
                severity="warning", source="bench",
                text=f"synthetic alert {k + 1} of {alerts}"), "bench", at)))
        return sorted(found, key=lambda x: x[0])

    def _announce(self, cid: str, at: int) -> tuple[int, list[bytes]]:
        width, height = MAIN
        return at, self.frames(topics.cam_stream(cid, "main"), CameraStream(
            camera_id=cid, profile="main", endpoint=self.live.media(cid, "main"),
            codec="h264", profile_level_id=self.sps.profile_level_id or "", width=width,
            height=height, fps=float(FPS), parameter_sets=self.extradata), f"camera@{cid}", at)

    def _status(self, i: int, at: int, frames: int) -> tuple[int, list[bytes]]:
        cid = self.ids[i]
        width, height = MAIN
        # Named as `edge.bench.record.recorder_config` names the cameras.
        return at, self.frames(topics.cam_status(cid), CameraStatus(
            camera_id=cid, name=f"Bench {i + 1}", state="live", codec="h264",
            profile=self.sps.profile, width=width, height=height, fps=float(FPS),
            kbps=self.kbps, gop=FPS,
            last_frame_age_s=round(self.rng.uniform(0.0, 1 / FPS), 3), frames=frames),
            f"camera@{cid}", at)

    def _thumbnail(self, cid: str, at: int) -> tuple[int, list[bytes]]:
        return at, self.frames(topics.cam_thumbnail(cid), CameraThumbnail(
            camera_id=cid, width=160, height=90, captured_ns=at - 30_000_000),
            f"camera@{cid}", at, (self.jpeg,))

    def _health(self, service: str, at: int, s: int) -> tuple[int, list[bytes]]:
        n = self._seq.get((service, topics.svc_health(service)), 0)
        return at, self.frames(topics.svc_health(service), ServiceHealth(
            service=service, pid=os.getpid(), state="running", uptime_s=float(s),
            published=n + 1), service, at)

    def _recorder(self, at: int, s: int, start: int, session_id: int,
                  written: dict[str, int], recording: int, end: int
                  ) -> tuple[int, list[bytes]]:
        done = (at - recording) / max(1, end - recording)
        streams = [RecorderStream(camera_id=cid, profile="main", state="recording",
                                  units_written=round(written[cid] * done))
                   for cid in self.ids]
        in_session = at >= start
        return at, self.frames(topics.RECORDER_STATUS, RecorderStatus(
            recording=True, streams=streams, bus_messages=s * (3 * len(self.ids) + 3),
            session_id=session_id if in_session else None,
            session_name=SESSION_NAME if in_session else "",
            session_start_ns=start if in_session else None), "recorder", at)
