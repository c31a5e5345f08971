"""Where the bus and the media plane listen, derived from config and environment.

ipc sockets live in one runtime directory. systemd hands each unit its own
through ``RuntimeDirectory=`` (``$RUNTIME_DIRECTORY``); the demo supervisor and
tests point every process at a private temp dir with ``$EDGE_RUNTIME_DIR``, so
two demos can run side by side.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from edge.config import BusConfig

RUNTIME_DIR_ENV = "EDGE_RUNTIME_DIR"
SYSTEMD_RUNTIME_DIR_ENV = "RUNTIME_DIRECTORY"


def runtime_dir(bus: BusConfig) -> Path:
    for var in (RUNTIME_DIR_ENV, SYSTEMD_RUNTIME_DIR_ENV):
        value = os.environ.get(var)
        if value:
            # systemd may pass several directories separated by ':'; ours is the first.
            return Path(value.split(":")[0])
    return Path(bus.runtime_dir)


@dataclass(frozen=True, slots=True)
class Endpoints:
    pub: str  # publishers connect here (the broker's XSUB)
    sub: str  # subscribers connect here (the broker's XPUB)
    router: str  # requests and replies (the broker's ROUTER)
    runtime_dir: Path
    request_timeout_s: float = 3.0

    @classmethod
    def from_config(cls, bus: BusConfig, runtime_dir_override: Path | None = None) -> Endpoints:
        """Endpoints of the bus; `runtime_dir_override` (a demo's, `--bus DIR`) beats all else."""
        d = runtime_dir_override or runtime_dir(bus)
        return cls(
            pub=bus.pub_endpoint or f"ipc://{d}/bus-pub.sock",
            sub=bus.sub_endpoint or f"ipc://{d}/bus-sub.sock",
            router=bus.router_endpoint or f"ipc://{d}/bus-router.sock",
            runtime_dir=d,
            request_timeout_s=bus.request_timeout_s,
        )

    def media(self, camera_id: str, profile: str = "main") -> str:
        """A camera's media-plane PUB endpoint (encoded access units)."""
        return f"ipc://{self.runtime_dir}/media-{camera_id}-{profile}.sock"
