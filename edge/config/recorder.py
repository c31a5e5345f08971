"""`[recorder]`: where recordings go and how long they are kept."""

from __future__ import annotations

from pydantic import Field

from edge.config.model import Model


class RecorderConfig(Model):
    enabled: bool = False
    path: str = "/var/lib/edge/recordings"
    segment_seconds: float = Field(default=1.0, gt=0, le=60)
    retention_hours: float = Field(default=72, gt=0)
