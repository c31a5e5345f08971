"""`[bus]`: where the control bus's three endpoints are."""

from __future__ import annotations

from pydantic import Field, field_validator

from edge.config.addresses import check_zmq_endpoint
from edge.config.model import Model


class BusConfig(Model):
    """Control-bus endpoints. Empty endpoints mean ipc sockets in `runtime_dir`."""

    runtime_dir: str = "/run/edge"
    pub_endpoint: str | None = None
    sub_endpoint: str | None = None
    router_endpoint: str | None = None
    request_timeout_s: float = Field(default=3.0, gt=0, le=60)

    @field_validator("pub_endpoint", "sub_endpoint", "router_endpoint")
    @classmethod
    def _endpoint(cls, v: str | None) -> str | None:
        return None if v is None else check_zmq_endpoint(v)
