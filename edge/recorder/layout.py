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

import os
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
