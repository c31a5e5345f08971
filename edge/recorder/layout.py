"""Where everything the vehicle records lives, under `[recorder] path`.

One place for the layout, so that the processes writing (the recorder for
video and the bus, each drone service for its link's MAVLink) and those
reading (the catalog's reindex, replay, exports) agree::

    <path>/video/<camera>/<stream>/<UTC start>.mp4   fragmented MP4 segments
    <path>/bus/<UTC start>.mcap                      the control bus
    <path>/mavlink/<link>/<UTC start>.tlog           each drone link, both ways
    <path>/catalog.sqlite                            the index of all of it
"""

from __future__ import annotations

import datetime as dt
import os
import re
from pathlib import Path

from edge.config import RecorderConfig

VIDEO_DIR = "video"
BUS_DIR = "bus"
TLOG_DIR = "mavlink"
CATALOG_FILE = "catalog.sqlite"
# `edge demo` records into its own runtime dir (removed when it ends, unless
# --keep), not where a vehicle's config says: it tells its children so here.
RECORDINGS_DIR_ENV = "EDGE_RECORDINGS_DIR"


def recordings_dir(config: RecorderConfig, config_dir: Path) -> Path:
    """`[recorder] path`, relative to the config file's folder when not absolute."""
    override = os.environ.get(RECORDINGS_DIR_ENV)
    if override:
        return Path(override)
    return config_dir / Path(config.path).expanduser()


def tlog_dir(config: RecorderConfig, config_dir: Path, link_id: str) -> Path:
    return recordings_dir(config, config_dir) / TLOG_DIR / link_id


_NAME = re.compile(r"(\d{8}T\d{6})\.(\d{3})Z(?:_\d+)?")


def utc_name(wall_ns: int) -> str:
    """``20261201T184800.123Z``: what video segment and bus log file names start with."""
    t = dt.datetime.fromtimestamp(wall_ns // 1_000_000_000, dt.UTC)
    return f"{t:%Y%m%dT%H%M%S}.{wall_ns // 1_000_000 % 1000:03d}Z"


def parse_utc_name(stem: str) -> int | None:
    """The wall-clock ns a file name made by :func:`utc_name` stands for, or None."""
    m = _NAME.fullmatch(stem)
    if m is None:
        return None
    t = dt.datetime.strptime(m.group(1), "%Y%m%dT%H%M%S").replace(tzinfo=dt.UTC)
    return int(t.timestamp()) * 1_000_000_000 + int(m.group(2)) * 1_000_000


def new_file(directory: Path, wall_ns: int, suffix: str) -> Path:
    """A new file's path in `directory` (made if need be) named for `wall_ns`: ``_1``,
    ``_2``... before the suffix when the name is taken (a clock that stepped back)."""
    directory.mkdir(parents=True, exist_ok=True)
    name = utc_name(wall_ns)
    path = directory / f"{name}{suffix}"
    n = 0
    while path.exists():
        n += 1
        path = directory / f"{name}_{n}{suffix}"
    return path
