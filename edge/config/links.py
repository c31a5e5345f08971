"""`[[links]]`, `[link_policy]` and `[centre]`: the vehicle's WAN links, how it chooses
among them, and the city centre they lead to (its probe responder and the tunnel)."""

from __future__ import annotations

import ipaddress
import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from edge.config.model import DeviceId, Model
from edge.config.secrets import SecretRef

StreamProfile = Literal["main", "sub"]
LinkKind = Literal["satellite", "lte-private", "lte-public", "ethernet", "mesh"]
# Linux interface names: at most 15 bytes, no slash or space.
_IFNAME = re.compile(r"^[A-Za-z0-9_.:-]{1,15}$")
_IFNAME_USAGE = "an interface name (at most 15 of a-z, 0-9, _ . : -)"


def check_ip(v: str) -> str:
    """`v` if it is an IP address; the `ValueError` a config key reports otherwise."""
    try:
        ipaddress.ip_address(v)
    except ValueError:
        raise ValueError(f'"{v}" is not an IP address') from None
    return v


def check_interface_address(v: str) -> str:
    """`v` if it is an address with its prefix, as an interface takes it ("10.77.0.2/24")."""
    try:
        ipaddress.ip_interface(v)
    except ValueError:
        raise ValueError(f'"{v}" is not an address with its prefix, like "10.77.0.2/24"'
                         ) from None
    if "/" not in v:
        raise ValueError(f'"{v}": give the prefix too, like "10.77.0.2/24"')
    return v


def check_interface_name(v: str) -> str:
    """`v` if Linux would take it as an interface name."""
    if not _IFNAME.match(v):
        raise ValueError(f'expected {_IFNAME_USAGE}, got "{v}"')
    return v


class WanLinkConfig(Model):
    """One WAN: the interface it leaves by, how it is reached, and what may cross it."""

    id: DeviceId
    name: str = Field(min_length=1, max_length=64)
    kind: LinkKind
    # The WAN's interface on the vehicle ("" for a link described but not run here).
    interface: str = ""
    # The vehicle's address on it: probes leave from it (default: the interface's first).
    source: str = ""
    # The next hop on it (the modem or router); "" when the centre is on the link itself.
    gateway: str = ""
    # The link's nominal capacity and round trip, as its datasheet gives them.
    capacity_kbps: int = Field(default=0, ge=0)
    rtt_ms: int = Field(default=0, ge=0)
    # Constrained: the uplink's `auto` sends sub streams while it carries the tunnel.
    constrained: bool = False
    # The stream profiles that may cross it. Default: sub only over a satellite.
    profiles: tuple[StreamProfile, ...] | None = None
    # The video bitrate the uplink may send over it (0: no ceiling beyond capacity).
    max_kbps: int = Field(default=0, ge=0)
    # Metered data (0: not metered), counted both ways from the interface's counters.
    budget_mb_per_day: int = Field(default=0, ge=0)
    budget_mb_per_incident: int = Field(default=0, ge=0)

    @field_validator("interface")
    @classmethod
    def _interface(cls, v: str) -> str:
        return check_interface_name(v) if v else v

    @field_validator("source", "gateway")
    @classmethod
    def _address(cls, v: str) -> str:
        return check_ip(v) if v else v

    def allowed_profiles(self) -> tuple[StreamProfile, ...]:
        if self.profiles is not None:
            return self.profiles
        return ("sub",) if self.kind == "satellite" else ("main", "sub")


class LinkPolicyConfig(Model):
    """`[link_policy]`: which WAN carries the tunnel, and when it changes."""

    # Link ids, most preferred first; links not named follow in config order.
    prefer: tuple[str, ...] = ()
    # A more preferred link that came back carries the tunnel again only after it has
    # been up this long (a flapping 4G link must not drag the centre's video with it).
    failback_after_s: float = Field(default=30.0, ge=0, le=3600)
    probe_rate_hz: float = Field(default=10.0, gt=0, le=100)
    # No probe answer for this long: down. A cut must be seen within half a second.
    down_after_ms: int = Field(default=300, ge=50, le=10_000)
    # Answers in a row before a link that was down is up again.
    up_after: int = Field(default=5, ge=1, le=100)


class TunnelConfig(Model):
    """`[centre.tunnel]`: the vehicle's end of the WireGuard tunnel to the centre."""

    interface: str = "edge-wg"
    # The vehicle's address inside the tunnel, with its prefix ("10.77.0.2/24").
    address: str
    # The centre's address inside the tunnel: what the vehicle's traffic for it is sent to.
    centre_address: str
    # The centre's WireGuard port on `centre.address`.
    port: int = Field(default=51820, ge=1, le=65535)
    private_key: SecretRef
    centre_public_key: SecretRef
    # Marks the tunnel's own packets, for the rule that steers them onto the active WAN.
    fwmark: int = Field(default=0xED6E, ge=1, le=0xFFFF_FFFF)
    table: int = Field(default=200, ge=1, le=0xFFFF_FFFE)
    keepalive_s: int = Field(default=5, ge=0, le=3600)

    @field_validator("interface")
    @classmethod
    def _interface(cls, v: str) -> str:
        return check_interface_name(v)

    @field_validator("address")
    @classmethod
    def _with_prefix(cls, v: str) -> str:
        return check_interface_address(v)

    @field_validator("centre_address")
    @classmethod
    def _centre_address(cls, v: str) -> str:
        return check_ip(v)


class CentreConfig(Model):
    """`[centre]`: the city centre the vehicle's links lead to."""

    # The centre's public address: its probe responder and the tunnel's far end.
    address: str
    probe_port: int = Field(default=7471, ge=1, le=65535)
    tunnel: TunnelConfig | None = None

    @field_validator("address")
    @classmethod
    def _address(cls, v: str) -> str:
        # An address, not a name: resolving it needs a working WAN, which is what the
        # probes are there to find out.
        return check_ip(v)

    @model_validator(mode="after")
    def _tunnel_port(self) -> CentreConfig:
        if self.tunnel is not None and self.tunnel.port == self.probe_port:
            raise ValueError("tunnel.port and probe_port must differ")
        return self
