"""`[[links]]`: the vehicle's WAN links (satellite, 4G, ...)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from edge.config.addresses import host_problem
from edge.config.model import DeviceId, Model


class WanLinkConfig(Model):
    id: DeviceId
    name: str = Field(min_length=1, max_length=64)
    kind: Literal["satellite", "lte-private", "lte-public", "ethernet", "mesh"]
    interface: str = ""
    probe_host: str = ""
    # The link's nominal capacity; the uplink picks sub streams when it is small.
    capacity_kbps: int = Field(default=0, ge=0)
    rtt_ms: int = Field(default=0, ge=0)
    constrained: bool = False

    @field_validator("probe_host")
    @classmethod
    def _probe_host(cls, v: str) -> str:
        why = host_problem(f"[{v}]" if ":" in v else v) if v else None
        if why:
            raise ValueError(why)
        return v
