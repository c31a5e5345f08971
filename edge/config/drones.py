"""`[[drones]]`: MAVLink links, and the ground stations each is relayed to."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator

from edge.config.addresses import check_link
from edge.config.model import DeviceId, Model
from edge.config.secrets import SecretRef

CONNECTION_RE = re.compile(r"^(udpin|udpout|tcp|tcpin):[^:\s]+:\d+$|^serial:/[^:\s]+:\d+$")


class MavlinkEndpointConfig(Model):
    """A mavlink-router style endpoint: where the drone's traffic is also sent."""

    name: DeviceId
    # The router serves these three; a GCS that dials out to us uses tcpin.
    url: str
    mode: Literal["ro", "rw"] = "ro"
    allow: list[int | str] = []
    deny: list[int | str] = []

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        return check_link(v, ("udpout", "udpin", "tcpin"))


class DroneLinkConfig(Model):
    id: DeviceId
    name: str = Field(default="", max_length=64)
    # udpin:HOST:PORT, udpout:HOST:PORT, tcp:HOST:PORT or serial:/dev/ttyX:BAUD
    connection: str
    source_system: int = Field(default=255, ge=1, le=255)
    telemetry_hz: float = Field(default=5.0, gt=0, le=50)
    signing_key: SecretRef | None = None
    endpoints: list[MavlinkEndpointConfig] = []

    @field_validator("connection")
    @classmethod
    def _connection(cls, v: str) -> str:
        if not CONNECTION_RE.match(v):
            raise ValueError("expected udpin:HOST:PORT, udpout:HOST:PORT, tcp:HOST:PORT or "
                             f'serial:/dev/DEVICE:BAUD, got "{v}"')
        if v.startswith("serial:"):
            if int(v.rpartition(":")[2]) == 0:
                raise ValueError(f'the baud rate must be more than 0, got "{v}"')
            return v
        return check_link(v, ("udpin", "udpout", "tcp", "tcpin"))
