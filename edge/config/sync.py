"""`[sync]`: the vehicle's bridge from the bus to NATS JetStream (`edge run sync`), its
local NATS server (a JetStream leaf node, `edge run nats`) and the centre's leafnode port
it links to, with the nkeys each connection proves itself with.

The secure way is the normal one: a NATS port reachable from anywhere but this machine
needs a key, and a config that would open one without (the vehicle's client port on an
address other than loopback, or a leaf link to a centre elsewhere without the vehicle's
seed) is refused here, when the config loads."""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from edge.config.model import ID_PATTERN, Model
from edge.config.secrets import SecretRef

_NATS_SCHEMES = ("nats", "tls")
_LEAF_SCHEMES = ("nats-leaf", "nats", "tls")


def _check_url(v: str, schemes: tuple[str, ...], example: str) -> str:
    try:
        parts = urlsplit(v)
        port = parts.port
    except ValueError:
        raise ValueError(f'"{v}" is not a URL like "{example}"') from None
    if parts.scheme not in schemes or not parts.hostname or port is None:
        raise ValueError(f'"{v}" is not a URL like "{example}" '
                         f"(scheme {' or '.join(schemes)}, a host and a port)")
    return v


def _loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class SyncConfig(Model):
    """`[sync]`: what of the bus goes to the centre, and how much may wait for it."""

    enabled: bool = False
    # The vehicle's own NATS server (the leaf node): the bridge publishes only to it.
    nats_url: str = "nats://127.0.0.1:4222"
    # The centre's leafnode listener, reached through the tunnel ("" : no link configured).
    centre_leaf_url: str = ""
    # The vehicle's NATS monitoring port (loopback only: it has no authentication).
    nats_monitor_port: int = Field(default=8222, ge=1, le=65535)
    # The nkey seed (SU…) of the vehicle's own NATS clients (the bridge): with it, the
    # vehicle's NATS admits nobody else. None: an open port, allowed on loopback alone.
    client_seed: SecretRef | None = None
    # The vehicle's nkey seed at the centre: its leaf connection signs with it; its
    # public key is this vehicle's `nats_key` in the centre's [[vehicles]].
    leaf_seed: SecretRef | None = None
    # Where the vehicle's NATS keeps its JetStream files (relative to the config's folder).
    store_dir: str = "nats"
    # Drone telemetry per drone, at most this often; every other kind goes on change.
    telemetry_hz: float = Field(default=1.0, gt=0, le=50)
    # The same, while the WAN carrying the tunnel is this [[links]] id (its
    # link/<id>/status says `active`); a link not named here: telemetry_hz.
    telemetry_hz_by_link: dict[str, float] = {}
    # Service health changes every second (uptime); between real changes, this often.
    health_every_s: float = Field(default=5.0, ge=0, le=3600)
    # The vehicle stream's limits: what the centre has not taken by then is lost.
    max_age_hours: float = Field(default=72.0, gt=0, le=24 * 365)
    max_mb: int = Field(default=1024, ge=1, le=1_000_000)
    # Messages the bridge holds while the local NATS is away; beyond it, the oldest
    # telemetry is dropped first, then other state; alerts, marks and commands never.
    queue_limit: int = Field(default=20_000, ge=10, le=10_000_000)

    @field_validator("nats_url")
    @classmethod
    def _nats_url(cls, v: str) -> str:
        return _check_url(v, _NATS_SCHEMES, "nats://127.0.0.1:4222")

    @field_validator("centre_leaf_url")
    @classmethod
    def _leaf_url(cls, v: str) -> str:
        return _check_url(v, _LEAF_SCHEMES, "nats-leaf://10.77.0.1:7422") if v else v

    @field_validator("telemetry_hz_by_link")
    @classmethod
    def _by_link(cls, v: dict[str, float]) -> dict[str, float]:
        for link, hz in v.items():
            if not re.match(ID_PATTERN, link):
                raise ValueError(f'"{link}" is not a link id (lower case letters, digits, '
                                 "- and _)")
            if not 0 < hz <= 50:
                raise ValueError(f"{link}: {hz} Hz is outside (0, 50]")
        return v

    @model_validator(mode="after")
    def _never_open(self) -> SyncConfig:
        if self.client_seed is None and not _loopback(self.nats_url):
            raise ValueError(f"nats_url {self.nats_url}: the vehicle's NATS would listen "
                             "beyond this machine without authentication: give client_seed "
                             "(an nkey seed, `edge centre keys`) or listen on 127.0.0.1")
        if self.centre_leaf_url and self.leaf_seed is None \
                and not _loopback(self.centre_leaf_url):
            raise ValueError(f"centre_leaf_url {self.centre_leaf_url}: the centre admits "
                             "vehicles by their nkey: give leaf_seed (`edge centre keys`)")
        return self
