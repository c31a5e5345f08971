"""The replay's test bench: a short session recorded for real (broker, simulated camera,
camera service, recorder), its bus logs read back with mcap's own reader, and a copy of the
recordings that a test may damage."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import tempfile
from dataclasses import dataclass
from pathlib import Path

import msgpack
from mcap.reader import make_reader

from drivers.sim.camera import SimCamera
from edge.bus import topics
from edge.bus.client import BusClient
from edge.bus.endpoints import Endpoints
from edge.bus.messages import Alert, CameraStatus, EventMark, RecordCommand, Reply
from edge.recorder.catalog import Catalog
from edge.recorder.layout import CATALOG_FILE
from edge.services.camera import CameraService
from edge.services.recorder import RecorderService
from tests import support
from tests.support import Inbox, eventually, running_broker
from tests.support.recorder import closed_segments, recorder_answers, recorder_config

# Functional bounds only: a loaded 2-core machine is slow, not wrong.
LIVE_S = 30.0
FILES_S = 30.0


@dataclass(frozen=True)
class Recorded:
    """A recorded session: its config, recordings dir, id and time range (wall ns)."""

    config_path: Path
    root: Path
    session_id: int
    start_ns: int
    end_ns: int
    marks: int
    alerts: int

    @property
    def catalog(self) -> Path:
        return self.root / CATALOG_FILE


def short_runtime_dir() -> Path:
    # ipc socket paths must fit in 107 bytes.
    return Path(tempfile.mkdtemp(prefix="edge-r-"))


def endpoints_in(runtime_dir: Path) -> Endpoints:
    return Endpoints(pub=f"ipc://{runtime_dir}/bus-pub.sock",
                     sub=f"ipc://{runtime_dir}/bus-sub.sock",
                     router=f"ipc://{runtime_dir}/bus-router.sock",
                     runtime_dir=runtime_dir, request_timeout_s=5.0)


async def record_session(tmp: Path, *, seconds: float = 8.0, marks: int = 3,
                         alerts: int = 4, live: bool = False) -> Recorded:
    """Record a named session of about `seconds` of a simulated camera (1 s GOP), with
    `marks` marks and `alerts` alerts published on the bus during it. A `live` camera
    encodes in real time, burning its encode time into each picture
    (`drivers.sim.camera.decode_timestamp_blocks` reads it back)."""
    runtime_dir = short_runtime_dir()
    endpoints = endpoints_in(runtime_dir)
    camera = SimCamera("gate", main=(640, 360), sub=None, loop_seconds=2.0, live=live)
    await camera.start()
    try:
        with running_broker(endpoints):
            bus = BusClient(endpoints, source="drill")
            try:
                return await _record(tmp, bus, endpoints, camera, seconds, marks, alerts)
            finally:
                await bus.close()
    finally:
        await camera.close()
        shutil.rmtree(runtime_dir, ignore_errors=True)


async def _record(tmp: Path, bus: BusClient, endpoints: Endpoints, camera: SimCamera,
                  seconds: float, marks: int, alerts: int) -> Recorded:
    config, config_path = recorder_config(tmp, {"gate": camera}, segment_seconds=2.0)
    root = tmp / "recordings"
    box = Inbox(bus.subscribe(topics.cam_status("gate")))
    async with support.hosted(CameraService, "camera@gate", config, config_path, endpoints), \
            support.hosted(RecorderService, "recorder", config, config_path, endpoints):
        await box.expect(CameraStatus, lambda m: m.state == "live", within=LIVE_S)
        await recorder_answers(bus)
        # Video from before the session too: a session starts mid-segment, as in real life.
        await eventually(lambda: closed_segments(root / CATALOG_FILE, "gate"), within=FILES_S,
                         what="a first segment")
        reply = (await bus.request(topics.RECORDER_SERVICE,
                                   RecordCommand(action="start", name="replay drill"))).message
        assert isinstance(reply, Reply) and reply.status == "accepted", reply
        session_id = int(reply.data["session_id"])
        steps = marks + alerts
        for i in range(steps):
            await asyncio.sleep(seconds / (steps + 1))  # spread over the session, on purpose
            if i % 2 == 0 and i // 2 < marks:
                bus.publish(topics.EVENT_MARK, EventMark(note=f"mark {i}", author="test"))
            else:
                bus.publish(topics.alert("drill"), Alert(severity="warning", text=f"alert {i}"))
        await asyncio.sleep(seconds / (steps + 1))
        reply = (await bus.request(topics.RECORDER_SERVICE,
                                   RecordCommand(action="stop"))).message
        assert isinstance(reply, Reply) and reply.status == "accepted", reply
        end_ns = int(reply.data["end_ns"])
        start_ns = int(reply.data["start_ns"])

        def indexed_past_end() -> bool:
            with Catalog(root / CATALOG_FILE) as cat:
                bus_end = max((b.last_ns or 0 for b in cat.bus_logs()), default=0)
                video_end = max((s.end_ns for s in cat.segments("gate", "main")), default=0)
            return bus_end > end_ns and video_end > end_ns

        await eventually(indexed_past_end, within=FILES_S,
                         what="bus logs and video past the session's end indexed")
    return Recorded(config_path, root, session_id, start_ns, end_ns, marks,
                    alerts)


def record_session_sync(tmp: Path, *, live: bool = False) -> Recorded:
    """:func:`record_session` for a module-scoped fixture (its own event loop)."""
    return asyncio.run(record_session(tmp, live=live))


@dataclass(frozen=True)
class ReplayAnnounced:
    """What `edge replay` printed about itself: its bus dir, and its uplink's URL and token
    file when it runs one."""

    runtime_dir: Path
    uplink_url: str | None
    token_file: Path | None


async def read_announcement(stderr: asyncio.StreamReader, *, uplink: bool,
                            within: float) -> ReplayAnnounced:
    """Read `edge replay`'s stderr until it has said where its bus (and uplink) are."""
    import re
    import time

    deadline = time.monotonic() + within
    runtime_dir: Path | None = None
    seen: list[str] = []
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError("edge replay did not announce itself:\n" + "".join(seen))
        line = (await asyncio.wait_for(stderr.readline(), left)).decode(errors="replace")
        if not line:
            raise AssertionError("edge replay ended before announcing itself:\n"
                                 + "".join(seen))
        seen.append(line)
        if m := re.search(r"replay bus and media plane in (\S+)", line):
            runtime_dir = Path(m.group(1))
            if not uplink:
                return ReplayAnnounced(runtime_dir, None, None)
        if m := re.search(r"uplink \(WHEP and the viewer page\): (\S+?)/? token in (\S+)",
                          line):
            assert runtime_dir is not None, seen
            return ReplayAnnounced(runtime_dir, m.group(1), Path(m.group(2)))


def logged(root: Path) -> list[tuple[int, list[bytes]]]:
    """(log time, frames) of every message of every bus log under `root`, by mcap's reader,
    in log-time order (stable for equal times: files in name order, each as written)."""
    found: list[tuple[int, list[bytes]]] = []
    for path in sorted((root / "bus").glob("*.mcap")):
        with open(path, "rb") as f:
            for _, _, message in make_reader(f).iter_messages(log_time_order=False):
                found.append((message.log_time, list(msgpack.unpackb(message.data))))
    found.sort(key=lambda x: x[0])
    return found


def copy_recordings(recorded: Recorded, dest: Path) -> tuple[Path, Path]:
    """The recordings copied to `dest/recordings` (the catalog's paths pointed at the copy)
    and a config that names it: (config path, recordings dir)."""
    root = dest / "recordings"
    shutil.copytree(recorded.root, root, ignore=shutil.ignore_patterns("recorder.lock"))
    db = sqlite3.connect(root / CATALOG_FILE)
    try:
        for table in ("segments", "bus_logs"):
            db.execute(f"UPDATE {table} SET path = replace(path, ?, ?)",
                       (str(recorded.root), str(root)))
        db.commit()
    finally:
        db.close()
    config = dest / "vehicle.toml"
    config.write_text(f'vehicle = "test"\n[recorder]\nenabled = true\npath = "{root}"\n')
    return config, root
