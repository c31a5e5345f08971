"""`[sync]`: the vehicle's bridge from the bus to NATS JetStream (`edge run sync`), its
local NATS server (a JetStream leaf node) and the centre's leafnode port it links to."""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import Field, field_validator

from edge.config.model import Model

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


class SyncConfig(Model):
    """`[sync]`: what of the bus goes to the centre, and how much may wait for it."""

    enabled: bool = False
    # The vehicle's own NATS server (the leaf node): the bridge publishes only to it.
    nats_url: str = "nats://127.0.0.1:4222"
    # The centre's leafnode listener, reached through the tunnel ("" : no link configured).
    centre_leaf_url: str = ""
    # Where the vehicle's NATS keeps its JetStream files (relative to the config's folder).
    store_dir: str = "nats"
    # Drone telemetry per drone, at most this often; every other kind goes on change.
    telemetry_hz: float = Field(default=1.0, gt=0, le=50)
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
