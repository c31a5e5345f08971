"""The recorder's test bench: a config that records a simulated camera, and its files read
back with tools nobody here wrote (mcap's reader, ffprobe) or through a second catalog
connection, as `edge record` will."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

import msgpack
from mcap.reader import make_reader

from drivers.sim.camera import SimCamera
from edge.bus import topics
from edge.bus.client import BusClient, RequestError
from edge.bus.messages import Ping
from edge.config import VehicleConfig, load_config
from edge.recorder.catalog import Catalog, Mark, SegmentRow, Session
from edge.recorder.mp4_repair import read_index


def recorder_config(tmp: Path, cameras: dict[str, SimCamera], *, segment_seconds: float = 2.0,
                    path: Path | None = None,
                    retention_hours: float | None = None,
                    min_free_percent: float | None = None) -> tuple[VehicleConfig, Path]:
    """A vehicle with `cameras` (id -> simulated camera, main stream only) and the recorder
    on, writing into `path` (default tmp/recordings); the TOML is written as an operator's."""
    recordings = path or tmp / "recordings"
    lines = ['vehicle = "test"']
    for cid, cam in cameras.items():
        lines += ["[[cameras]]", f"id = {json.dumps(cid)}", f"name = {json.dumps(cid.title())}",
                  f"main = {json.dumps(cam.url('main'))}"]
    lines += ["[recorder]", "enabled = true", f"path = {json.dumps(str(recordings))}",
              f"segment_seconds = {segment_seconds}"]
    if retention_hours is not None:
        lines.append(f"retention_hours = {retention_hours}")
    if min_free_percent is not None:
        lines.append(f"min_free_percent = {min_free_percent}")
    config_path = tmp / "vehicle.toml"
    config_path.write_text("\n".join(lines) + "\n")
    return load_config(config_path), config_path


def closed_segments(catalog: Path, camera: str, stream: str = "main") -> list[SegmentRow]:
    """The segments the catalog holds for a stream, read through a connection of our own."""
    if not catalog.exists():
        return []
    with Catalog(catalog) as cat:
        return cat.segments(camera, stream)


def bus_messages(directory: Path) -> list[tuple[str, str, list[bytes]]]:
    """(topic, schema name, frames) of every message in every finished bus log under
    `directory`, file by file in name order, each file in the order received, by mcap's reader."""
    found: list[tuple[str, str, list[bytes]]] = []
    for path in sorted(directory.glob("*.mcap")):
        with open(path, "rb") as f:
            for schema, channel, message in make_reader(f).iter_messages(log_time_order=False):
                frames = msgpack.unpackb(message.data)
                found.append((channel.topic, schema.name if schema else "", list(frames)))
    return found


def tear_tail(path: Path) -> int:
    """Leave `path` (a fragmented MP4) as a write cut short by a power cut leaves it: the
    start of its last complete fragment written again after it, cut mid-box. Returns the
    file's new size."""
    last = read_index(path).fragments[-1]
    with open(path, "r+b") as f:
        f.seek(last.offset)
        partial = f.read(min(last.size - 1, 200))
        f.seek(0, os.SEEK_END)
        f.write(partial)
    return path.stat().st_size


def catalog_marks(catalog: Path) -> list[Mark]:
    """Every mark the catalog holds, read through a connection of our own."""
    if not catalog.exists():
        return []
    with Catalog(catalog) as cat:
        return cat.marks()


def catalog_sessions(catalog: Path) -> list[Session]:
    if not catalog.exists():
        return []
    with Catalog(catalog) as cat:
        return cat.sessions()


def last_json(stdout: str) -> dict[str, Any]:
    """The JSON object on the last line of a command's output."""
    lines = stdout.strip().splitlines()
    assert lines, "no output"
    found = json.loads(lines[-1])
    assert isinstance(found, dict), lines[-1]
    return found


async def recorder_answers(bus: BusClient, within: float = 10.0) -> None:
    """Until the broker routes requests to the recorder: a service registers a moment after
    it is ready (and then once a second), so a first request may find no one yet."""
    deadline = time.monotonic() + within
    while True:
        try:
            await bus.request(topics.RECORDER_SERVICE, Ping(payload="are you there"))
            return
        except RequestError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)
