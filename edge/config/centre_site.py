"""The city centre's own config (`edge centre --config centre.toml`): where it listens for
the vehicles' probes and tunnels, and the vehicles it lets in."""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from edge.config.links import check_interface_address, check_interface_name, check_ip
from edge.config.model import ID_PATTERN, DeviceId, Model
from edge.config.secrets import SecretRef


class CentreVehicleConfig(Model):
    """`[[vehicles]]`: a vehicle the centre's tunnel accepts."""

    id: DeviceId
    public_key: SecretRef
    # Its address inside the tunnel (what the centre reaches it at: its WHEP server).
    tunnel_address: str

    @field_validator("tunnel_address")
    @classmethod
    def _tunnel_address(cls, v: str) -> str:
        return check_ip(v)


class CentreTunnelConfig(Model):
    """`[tunnel]`: the centre's end of the vehicles' WireGuard tunnels."""

    interface: str = "edge-wgc"
    # The centre's address inside the tunnel, with its prefix ("10.77.0.1/24").
    address: str
    port: int = Field(default=51820, ge=1, le=65535)
    private_key: SecretRef

    @field_validator("interface")
    @classmethod
    def _interface(cls, v: str) -> str:
        return check_interface_name(v)

    @field_validator("address")
    @classmethod
    def _address(cls, v: str) -> str:
        return check_interface_address(v)


class CentreSiteConfig(Model):
    centre: str = Field(default="centre", pattern=ID_PATTERN)
    # The address the vehicles reach the centre at (probes and tunnel both).
    listen: str
    probe_port: int = Field(default=7471, ge=1, le=65535)
    tunnel: CentreTunnelConfig | None = None
    vehicles: list[CentreVehicleConfig] = []

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str) -> str:
        return check_ip(v)

    @model_validator(mode="after")
    def _consistent(self) -> CentreSiteConfig:
        if self.tunnel is not None and self.tunnel.port == self.probe_port:
            raise ValueError("tunnel.port and probe_port must differ")
        seen: dict[str, int] = {}
        for i, v in enumerate(self.vehicles):
            if v.id in seen:
                raise ValueError(f'vehicles[{i}].id: "{v.id}" is already the id of '
                                 f"vehicles[{seen[v.id]}]")
            seen[v.id] = i
        if self.vehicles and self.tunnel is None:
            raise ValueError("vehicles are listed but there is no [tunnel] for them")
        return self
