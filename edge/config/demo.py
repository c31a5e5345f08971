"""`[demo]`: the simulated devices `edge demo` starts beside the services."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from edge.config.addresses import check_link
from edge.config.model import DeviceId, Model, Position


class SimCameraConfig(Model):
    name: DeviceId
    port: int = Field(ge=1, le=65535)
    codec: Literal["h264", "h265"] = "h264"
    profile: Literal["baseline", "high"] = "baseline"


class SimDroneConfig(Model):
    connection: str
    sysid: int = Field(default=1, ge=1, le=254)
    home: Position | None = None
    camera: str | None = None

    @field_validator("connection")
    @classmethod
    def _connection(cls, v: str) -> str:
        return check_link(v, ("tcp", "udpin", "udpout"))


class DemoConfig(Model):
    """Simulated devices that `edge demo` starts beside the services."""

    sim_cameras: list[SimCameraConfig] = []
    sim_drones: list[SimDroneConfig] = []
