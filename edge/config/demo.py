"""`[demo]`: the simulated devices `edge demo` starts beside the services, and the links it
emulates."""

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


#: the link emulator's profiles (drivers/sim/link/profile.py `PROFILES`; a test keeps the two
#: in step: the config imports nothing, so it cannot read them there)
SimLinkProfile = Literal["geo", "geo-bad", "leo", "lte"]


class SimLinkConfig(Model):
    """One of the vehicle's `[[links]]` emulated by `edge demo` (as root: it needs network
    namespaces), with the link emulator's profile it gets."""

    link: DeviceId
    profile: SimLinkProfile


class DemoConfig(Model):
    """Simulated devices that `edge demo` starts beside the services."""

    sim_cameras: list[SimCameraConfig] = []
    sim_drones: list[SimDroneConfig] = []
    sim_links: list[SimLinkConfig] = []
