"""The services a vehicle runs, by name: `edge run NAME` and `edge demo` read this table.

A templated service (``camera@ID``) has one process per configured device;
its ``instances`` lists the ids the config defines. Imports are lazy so the
CLI starts fast and a service's heavy libraries load only in its own process.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edge.config import VehicleConfig
    from edge.runtime.service import Service


@dataclass(frozen=True)
class ServiceSpec:
    kind: str
    summary: str
    target: str  # "module:Class"
    instances: Callable[[VehicleConfig], list[str]] | None = None  # None: one per vehicle
    enabled: Callable[[VehicleConfig], bool] = lambda cfg: True
    # False: the process never speaks TLS, so it runs without OpenSSL loaded (see edge.cli).
    tls: bool = True

    def load(self) -> type[Service]:
        module, cls = self.target.split(":")
        loaded: type[Service] = getattr(importlib.import_module(module), cls)
        return loaded

    def names(self, cfg: VehicleConfig) -> list[str]:
        """The process names this spec runs for a config (``camera@north-gate``, ``bus``)."""
        if self.instances is None:
            return [self.kind] if self.enabled(cfg) else []
        return [f"{self.kind}@{i}" for i in self.instances(cfg)]


SERVICES: dict[str, ServiceSpec] = {
    spec.kind: spec
    for spec in (
        ServiceSpec("bus", "the control-bus broker (proxy, last-value cache, request routing)",
                    "edge.services.bus:BusService", tls=False),
        ServiceSpec("camera", "one camera: its sources onto the media plane, status, thumbnails",
                    "edge.services.camera:CameraService",
                    instances=lambda cfg: [c.id for c in cfg.cameras]),
        ServiceSpec("drone", "one MAVLink link: its vehicles' telemetry, alerts and commands",
                    "edge.services.drone:DroneService",
                    instances=lambda cfg: [d.id for d in cfg.drones]),
        ServiceSpec("uplink", "the city centre's WHEP server, viewer page and state API",
                    "edge.services.uplink:UplinkService",
                    enabled=lambda cfg: cfg.uplink.enabled),
        ServiceSpec("recorder", "every camera stream and every bus message on disk, indexed",
                    "edge.services.recorder:RecorderService",
                    enabled=lambda cfg: cfg.recorder.enabled),
        ServiceSpec("links", "the WAN links: probes, the tunnel to the centre and which WAN "
                    "carries it", "edge.services.links:LinksService",
                    enabled=lambda cfg: bool(cfg.links)),
        ServiceSpec("nats", "the vehicle's NATS JetStream server (a leaf node of the centre's)",
                    "edge.services.nats:NatsService", enabled=lambda cfg: cfg.sync.enabled),
        ServiceSpec("sync", "the bus to the vehicle's NATS JetStream, which the centre sources",
                    "edge.services.sync:SyncService", enabled=lambda cfg: cfg.sync.enabled),
        ServiceSpec("gb28181", "the GB/T 28181 platform: dome cameras register, are asked for "
                    "video and steered", "edge.services.gb28181:Gb28181Service",
                    enabled=lambda cfg: cfg.gb28181.enabled),
    )
}


def split_name(name: str) -> tuple[str, str | None]:
    kind, _, instance = name.partition("@")
    return kind, instance or None
