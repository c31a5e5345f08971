"""`[recorder]`: where recordings go and how long they are kept."""

from __future__ import annotations

import math
import re
from typing import Annotated, Any

from pydantic import BeforeValidator, Field

from edge.config.model import Model

# Binary multiples, as `df -h` and `du -h` count: "50G" is 50 GiB.
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*", re.IGNORECASE)
SIZE_USAGE = 'a whole number of bytes or a size such as "800M", "50G" or "1.5T"'


def _shown(value: Any) -> str:
    # As the operator wrote it in TOML.
    if isinstance(value, bool):
        return "true" if value else "false"
    return f'"{value}"' if isinstance(value, str) else repr(value)


def parse_size(value: Any) -> Any:
    """A byte count from a number of bytes or a size with a K/M/G/T suffix (powers of 1024)."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(f"expected {SIZE_USAGE}, got {_shown(value)}")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int):
        size = value
    elif isinstance(value, str) and (m := _SIZE.fullmatch(value)):
        number = float(m.group(1))
        size = math.floor(number * _UNITS[m.group(2).upper()])
    else:
        raise ValueError(f"expected {SIZE_USAGE}, got {_shown(value)}")
    if size <= 0:
        raise ValueError(f"expected a size above 0 bytes, got {_shown(value)}")
    return size


ByteSize = Annotated[int, BeforeValidator(parse_size)]


class RecorderConfig(Model):
    # Whether the vehicle runs the recorder service (`edge run recorder`).
    enabled: bool = False
    # The recordings directory: video under video/<camera>/<stream>/, bus logs under bus/,
    # the catalog in catalog.sqlite. A relative path is taken from the config file's folder.
    path: str = "/var/lib/edge/recordings"
    # Length of a video segment file (each starts at the first keyframe after this much)
    # and of a bus log file. A crash loses at most the last ~1 s fragment either way; this
    # only sets how many files there are and how finely retention prunes.
    segment_seconds: float = Field(default=60.0, gt=0, le=600)
    # Recordings older than this are pruned (never a named session's).
    retention_hours: float = Field(default=72, gt=0)
    # The most the recordings may take (video, bus logs, MAVLink logs): the oldest are
    # pruned past it. Bytes, or "50G" style (powers of 1024). None: no limit but the disk's.
    max_bytes: ByteSize | None = None
    # Keep at least this share of the recordings' filesystem free, pruning the oldest
    # recordings to do so: the disk also holds the system's logs and the catalog, and a
    # full one fails more than the recorder. None: prune only when a write finds it full.
    min_free_percent: float | None = Field(default=5.0, ge=0, le=99)
