"""The city centre's own config (`edge centre --config centre.toml`): where it listens for
the vehicles' probes and tunnels, its NATS (`[nats]`, `edge centre nats`), and the vehicles
it lets in."""

from __future__ import annotations

import ipaddress

from pydantic import Field, field_validator, model_validator

from edge.config.centre_page import CentrePageConfig, check_uplink_url
from edge.config.links import check_interface_address, check_interface_name, check_ip
from edge.config.model import ID_PATTERN, DeviceId, Model
from edge.config.secrets import SecretRef


class CentreVehicleConfig(Model):
    """`[[vehicles]]`: a vehicle the centre's tunnel accepts and whose stream it sources."""

    id: DeviceId
    # Its WireGuard public key and its address inside the tunnel (what the centre reaches
    # it at: its WHEP server): both with a [tunnel], neither without.
    public_key: SecretRef | None = None
    tunnel_address: str | None = None
    # Its NATS nkey public key (U…, the public half of its [sync] leaf_seed): the
    # centre's leafnode port admits it by this.
    nats_key: SecretRef | None = None
    # Its uplink as the centre reaches it (through the tunnel: "http://10.77.0.2:8800"),
    # for the centre page's roll-call and thumbnails; "": the page shows its state only.
    uplink_url: str = ""
    # The vehicle's uplink token, kept at the centre: the page's users never see it.
    uplink_token: SecretRef | None = None

    @field_validator("tunnel_address")
    @classmethod
    def _tunnel_address(cls, v: str | None) -> str | None:
        return None if v is None else check_ip(v)

    @field_validator("uplink_url")
    @classmethod
    def _uplink_url(cls, v: str) -> str:
        return check_uplink_url(v) if v else v

    @model_validator(mode="after")
    def _token_with_url(self) -> CentreVehicleConfig:
        if self.uplink_url and self.uplink_token is None:
            raise ValueError("uplink_url is given without uplink_token: the uplink refuses "
                             'every request without its token (uplink_token = { file = "…" })')
        return self


class CentreClusterConfig(Model):
    """`[nats.cluster]`: this server as one of a JetStream cluster of centre servers."""

    name: str = Field(default="centre", pattern=ID_PATTERN)
    # This node's own name (unique in the cluster; JetStream needs it).
    server_name: str = Field(pattern=ID_PATTERN)
    # Where this node listens for its peers' routes (a private network between them).
    listen: str
    port: int = Field(default=6222, ge=1, le=65535)
    # Every node's route URL ("nats-route://10.1.0.11:6222"), this one's included.
    routes: list[str] = Field(min_length=2)

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str) -> str:
        return check_ip(v)


class CentreNatsConfig(Model):
    """`[nats]`: the centre's NATS JetStream (domain ``centre``) and its sourcing."""

    # The client port (`edge centre`, the centre page): loopback unless keys are given.
    listen: str = "127.0.0.1"
    port: int = Field(default=4222, ge=1, le=65535)
    # The monitoring port (loopback only: it has no authentication).
    monitor_port: int = Field(default=8222, ge=1, le=65535)
    # Where the vehicles' leaf connections arrive: the tunnel address, usually.
    leaf_listen: str = "127.0.0.1"
    leaf_port: int = Field(default=7422, ge=1, le=65535)
    # JetStream's files (relative to this config's folder).
    store_dir: str = "nats"
    max_store_mb: int = Field(default=0, ge=0, le=100_000_000)
    # The seed (SU…) of the centre's own clients (`edge centre`, the centre page); with
    # it (and the vehicles' nats_key) every connection needs a key.
    client_seed: SecretRef | None = None
    # Each vehicle's stream here keeps this much (what is older or beyond is dropped).
    max_age_hours: float = Field(default=72.0, gt=0, le=24 * 365)
    max_mb_per_vehicle: int = Field(default=1024, ge=1, le=1_000_000)
    # A source that has not moved for this long while its vehicle's leaf is connected
    # and has something to send is stalled; `edge centre` says so and kicks it.
    stall_after_s: float = Field(default=20.0, ge=1, le=3600)
    cluster: CentreClusterConfig | None = None

    @field_validator("listen", "leaf_listen")
    @classmethod
    def _addresses(cls, v: str) -> str:
        return check_ip(v)

    @property
    def url(self) -> str:
        return f"nats://{self.listen}:{self.port}"


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
    nats: CentreNatsConfig | None = None
    # The centre page (needs [nats]: it reads what the vehicles' streams bring).
    page: CentrePageConfig | None = None
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
        if self.vehicles and self.tunnel is None and self.nats is None:
            raise ValueError("vehicles are listed but there is no [tunnel] or [nats] for them")
        for i, v in enumerate(self.vehicles):
            if self.tunnel is not None:
                for key in ("public_key", "tunnel_address"):
                    if getattr(v, key) is None:
                        raise ValueError(f"vehicles[{i}].{key}: missing (the [tunnel] "
                                         "needs each vehicle's)")
            elif v.public_key is not None or v.tunnel_address is not None:
                raise ValueError(f"vehicles[{i}]: public_key and tunnel_address are for "
                                 "the [tunnel], and there is none")
        if self.nats is not None:
            self._nats_is_closed(self.nats)
        if self.page is not None and self.page.enabled and self.nats is None:
            raise ValueError("[page] shows what the vehicles' streams bring: it needs [nats]")
        return self

    def _nats_is_closed(self, nats: CentreNatsConfig) -> None:
        keyed = [v.nats_key is not None for v in self.vehicles]
        if any(keyed) and not all(keyed):
            missing = next(v.id for v in self.vehicles if v.nats_key is None)
            raise ValueError(f"vehicle {missing!r} has no nats_key: with keys, the leaf "
                             "port admits only vehicles that have one")
        if all(keyed) and self.vehicles and nats.client_seed is None:
            raise ValueError("nats.client_seed: missing (with the vehicles' nats_key, the "
                             "centre's own clients need a key too)")
        if not ipaddress.ip_address(nats.listen).is_loopback and nats.client_seed is None:
            raise ValueError(f"nats.listen {nats.listen}: the client port would be open "
                             "beyond this machine: give nats.client_seed or listen on "
                             "127.0.0.1")
        if not ipaddress.ip_address(nats.leaf_listen).is_loopback and not (
                self.vehicles and all(keyed)):
            raise ValueError(f"nats.leaf_listen {nats.leaf_listen}: the leaf port would "
                             "admit anyone: give each [[vehicles]] its nats_key or listen "
                             "on 127.0.0.1")
        ports = {"port": nats.port, "monitor_port": nats.monitor_port,
                 "leaf_port": nats.leaf_port}
        if len(set(ports.values())) < len(ports):
            raise ValueError("nats.port, nats.monitor_port and nats.leaf_port must differ")
