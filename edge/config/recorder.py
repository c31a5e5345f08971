"""`[recorder]`: where recordings go and how long they are kept."""

from __future__ import annotations

from pydantic import Field

from edge.config.model import Model


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
