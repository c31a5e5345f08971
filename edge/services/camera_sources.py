"""Camera sources built from config, by kind: the camera service's only way to make one.

Each kind of `edge.config.SourceSpec` has one factory here, registered with
:func:`source_kind`; :func:`build_source` looks the kind up. The camera
service calls that and nothing else, so a new kind (gb28181, onvif, replay)
is a config variant, a driver and a factory, and no edit to the service.

- ``rtsp``: `drivers.rtsp.RtspSource` at the configured URL.
- ``drone``: RTSP at the URL the drone announces on ``drone/<id>/stream``:
  the resolver (the bus part) is here, the RTSP part is the same factory as
  ``rtsp``'s, and `drivers.resolved_source.ResolvedSource` joins the two.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from drivers.resolved_source import ResolvedSource
from drivers.rtsp.demux import redact_url, with_credentials
from drivers.rtsp.source import RtspSource
from drivers.source import AccessUnitSink, Source, StateCallback
from edge.bus import topics
from edge.bus.client import BusClient
from edge.bus.messages import DroneVideo
from edge.config import CameraConfig, ConfigError, DroneSourceConfig, RtspSourceConfig, SourceSpec

DRONE_WAITING = "waiting for the drone to announce its camera"


@dataclass(frozen=True)
class SourceSetup:
    """What a factory gets besides the source's own config."""

    name: str  # "<camera id>/<profile>", for logs and reasons
    camera: CameraConfig
    credentials: str | None  # the camera's "user:password", already read from its secret
    bus: BusClient
    log: logging.Logger
    sink: AccessUnitSink
    on_state: StateCallback


Spec = TypeVar("Spec", bound=SourceSpec)
Factory = Callable[[Spec, SourceSetup], Source]

_FACTORIES: dict[str, Factory[Any]] = {}


def source_kind(spec: type[Spec]) -> Callable[[Factory[Spec]], Factory[Spec]]:
    """Register the decorated function as the factory of `spec`'s kind."""
    def register(factory: Factory[Spec]) -> Factory[Spec]:
        _FACTORIES[spec.kind] = factory
        return factory
    return register


def source_kinds() -> frozenset[str]:
    return frozenset(_FACTORIES)


def build_source(spec: SourceSpec, setup: SourceSetup) -> Source:
    """A source for `spec`, not started, reporting to `setup`'s sink and `on_state`."""
    factory = _FACTORIES.get(spec.kind)
    if factory is None:
        raise ConfigError(f"camera {setup.camera.id}",
                          [f'{setup.name}: this build cannot read "{spec.kind}" sources'])
    return factory(spec, setup)


def _rtsp_at(url: str, setup: SourceSetup, sink: AccessUnitSink,
             on_state: StateCallback) -> RtspSource:
    return RtspSource(with_credentials(url, setup.credentials), transport=setup.camera.transport,
                      name=setup.name, sink=sink, on_state=on_state)


@source_kind(RtspSourceConfig)
def _rtsp(spec: RtspSourceConfig, setup: SourceSetup) -> Source:
    return _rtsp_at(spec.rtsp, setup, setup.sink, setup.on_state)


@source_kind(DroneSourceConfig)
def _drone(spec: DroneSourceConfig, setup: SourceSetup) -> Source:
    return ResolvedSource(
        drone_stream_urls(setup.bus, spec.drone, setup.log),
        lambda url, sink, on_state: _rtsp_at(url, setup, sink, on_state),
        name=setup.name, waiting=DRONE_WAITING, sink=setup.sink, on_state=setup.on_state)


async def drone_stream_urls(bus: BusClient, drone_id: str,
                            log: logging.Logger) -> AsyncGenerator[str, None]:
    """Each new RTSP URL the drone announces for its camera, as it announces it."""
    current = ""
    sub = bus.subscribe(topics.drone_video(drone_id))
    try:
        async for env in sub:
            msg = env.message
            if not isinstance(msg, DroneVideo) or not msg.uri or msg.uri == current:
                continue
            if not msg.uri.startswith(("rtsp://", "rtsps://")):
                log.warning("drone %s announced a non-RTSP stream %r; ignored", drone_id, msg.uri)
                continue
            current = msg.uri
            log.info("drone %s camera at %s", drone_id, redact_url(msg.uri))
            yield msg.uri
    finally:
        sub.close()
