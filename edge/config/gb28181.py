"""`[gb28181]`: the vehicle as a GB/T 28181 platform (`edge run gb28181`).

The 5G dome cameras bureaus deploy register to the vehicle over SIP and send
video only when invited. The section says who the vehicle is (its 20-digit
platform id, its SIP domain), where it listens (UDP and TCP on one port),
how devices prove themselves (a shared password and/or one per device, by
secret reference), and where devices send their media::

    [gb28181]
    enabled = true
    platform_id = "34020000002000000001"
    listen = "0.0.0.0:5060"
    password = { file = "gb28181.secret" }
    media_host = "10.8.0.1"          # what devices send to; "" = where they reached us
    rtp_ports = "30000-30999"

    [[gb28181.devices]]
    id = "34020000001320000001"
    name = "North dome"
    password = { credential = "gb-north" }

A camera stream reads a device's channel with
`main = { gb28181 = "<device id>/<channel id>" }` (`edge.config.cameras`).
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, field_validator, model_validator

from edge.config.addresses import check_host_port, host_problem
from edge.config.model import Model
from edge.config.secrets import SecretRef

GB_ID_EXAMPLE = "34020000001320000001"
_PORT_RANGE = re.compile(r"^\s*(\d{1,5})\s*-\s*(\d{1,5})\s*$")

MediaTransportName = Literal["udp", "tcp-passive", "tcp-active"]


def check_gb_id(value: str, what: str = "id") -> str:
    """A GB/T 28181 code: 20 decimal digits (centre, industry, type and serial)."""
    if len(value) != 20 or not value.isascii() or not value.isdigit():
        raise ValueError(f'{what} must be 20 digits (GB/T 28181), like "{GB_ID_EXAMPLE}", '
                         f'got "{value[:40]}"')
    return value


GbId = Annotated[str, AfterValidator(check_gb_id)]


def parse_port_range(value: str) -> tuple[int, int]:
    """`"30000-30999"` as (30000, 30999); ValueError naming the problem."""
    m = _PORT_RANGE.match(value)
    if m is None:
        raise ValueError(f'expected a port range like "30000-30999", got "{value[:40]}"')
    low, high = int(m.group(1)), int(m.group(2))
    if not 1024 <= low <= high <= 65535:
        raise ValueError(f"port range {low}-{high} must lie within 1024-65535, low end first")
    return low, high


class GbDeviceConfig(Model):
    """`[[gb28181.devices]]`: a device with its own password (or just a name)."""

    id: GbId
    name: str = Field(default="", max_length=64)
    # None: the section's shared password.
    password: SecretRef | None = None


class Gb28181Config(Model):
    enabled: bool = False
    # The vehicle's own id, which devices are configured to register to.
    platform_id: GbId = "34020000002000000001"
    # The SIP domain and digest realm; "" is the standard's: the id's first 10 digits.
    realm: str = Field(default="", max_length=64)
    # UDP and TCP, both on this address.
    listen: str = "0.0.0.0:5060"
    # The password every device not listed in `devices` with its own uses.
    password: SecretRef | None = None
    devices: list[GbDeviceConfig] = []
    # What devices are told (GB/T 28181 §9.6: 60 s); offline after `keepalive_misses`.
    keepalive_interval_s: float = Field(default=60.0, gt=0, le=3600)
    keepalive_misses: int = Field(default=3, ge=1, le=100)
    # Wrong digests before a device id is refused (403) for a while.
    max_auth_failures: int = Field(default=3, ge=1, le=100)
    # The address devices send media to, as they reach it ("" : the vehicle's address on
    # the route to that device, right unless a NAT sits on the vehicle's side).
    media_host: str = ""
    # Where camera processes open their RTP sockets.
    media_bind: str = "0.0.0.0"
    rtp_ports: str = "30000-30999"
    # How a device sends PS: RTP over UDP, or TCP (RFC 4571) connecting to us
    # (`tcp-passive`: we listen) or accepting us (`tcp-active`: we connect).
    invite_transport: MediaTransportName = "udp"
    # How long a device's answer to INVITE, DeviceControl or a query may take.
    request_timeout_s: float = Field(default=8.0, gt=0, le=60)
    # A live stream without a packet this long is lost (and invited again).
    no_media_s: float = Field(default=10.0, gt=0, le=600)
    # Seconds a channel stays invited after its last media-plane consumer (0: always);
    # it costs the device's SIM data. The recorder is a consumer of what it records.
    linger_s: float = Field(default=30.0, ge=0, le=3600)
    # A session's requester (a camera process) without a `svc/<name>/health` this long is
    # gone (killed, its host hung): its sessions are ended (BYE), since the device would
    # otherwise send to a dead port on the SIM's data until it noticed. Health is 1 Hz.
    owner_silent_s: float = Field(default=10.0, ge=2, le=600)
    # SIP over TCP: connections opened to the vehicle at a time (one per device; more are
    # refused), and how long one may stay silent with no registered device on it.
    max_tcp_connections: int = Field(default=256, ge=1, le=65536)
    tcp_idle_s: float = Field(default=120.0, gt=0, le=86400)

    @field_validator("realm")
    @classmethod
    def _realm(cls, v: str) -> str:
        if v and not re.fullmatch(r"[A-Za-z0-9.-]+", v):
            raise ValueError(f'"{v}" is not a SIP domain (digits, letters, "." and "-")')
        return v

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str) -> str:
        return check_host_port(v, allow_zero_port=True)

    @field_validator("media_host", "media_bind")
    @classmethod
    def _host(cls, v: str) -> str:
        if v:
            why = host_problem(v)
            if why:
                raise ValueError(why)
        return v

    @field_validator("rtp_ports")
    @classmethod
    def _ports(cls, v: str) -> str:
        parse_port_range(v)
        return v

    @model_validator(mode="after")
    def _passwords(self) -> Gb28181Config:
        seen: dict[str, int] = {}
        for i, device in enumerate(self.devices):
            if device.id in seen:
                raise ValueError(f'devices[{i}].id: "{device.id}" is already '
                                 f"devices[{seen[device.id]}]")
            seen[device.id] = i
        if self.enabled and self.password is None:
            missing = [i for i, d in enumerate(self.devices) if d.password is None]
            if not self.devices:
                raise ValueError("password: devices must authenticate: give a shared "
                                 'password (password = { file = "…" }) or '
                                 "[[gb28181.devices]] with their own")
            if missing:
                raise ValueError(f"devices[{missing[0]}].password: no password, and no shared "
                                 "one in [gb28181] password")
        return self

    @property
    def rtp_port_range(self) -> tuple[int, int]:
        return parse_port_range(self.rtp_ports)

    @property
    def sip_host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def sip_port(self) -> int:
        return int(self.listen.rpartition(":")[2])
