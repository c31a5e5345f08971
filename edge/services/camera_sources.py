"""Camera sources built from config, by kind: the camera service's only way to make one.

Each kind of `edge.config.SourceSpec` has one factory here, registered with
:func:`source_kind`; :func:`build_source` looks the kind up. The camera
service calls that and nothing else, so a new kind (gb28181, onvif, replay)
is a config variant, a driver and a factory, and no edit to the service.

- ``rtsp``: `drivers.rtsp.RtspSource` at the configured URL.
- ``drone``: RTSP at the URL the drone announces on ``drone/<id>/stream``:
  the resolver (the bus part) is here, the RTSP part is the same factory as
  ``rtsp``'s, and `drivers.resolved_source.ResolvedSource` joins the two.
- ``gb28181``: `drivers.gb28181.source.GbSource`, a device's channel invited by the
  gb28181 service: the source opens the media socket, and :class:`GbServiceLink`
  (the bus part) reads the service's media settings on ``gb/platform/info``, asks it
  for INVITE, BYE and keyframes, and follows the device's status to learn at once that
  the device ended the session (its BYE) rather than waiting for the media's silence.
- ``onvif``: `drivers.onvif.source.OnvifSource`: RTSP at the URI the device gives
  (GetStreamUri) for the configured profile, asked again when the RTSP source
  keeps failing; the RTSP part is the same factory as ``rtsp``'s.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from drivers.gb28181.source import GbSource, GbSourceError, Invited, MediaPlan
from drivers.resolved_source import ResolvedSource
from drivers.rtsp.demux import redact_url, with_credentials
from drivers.rtsp.source import RtspSource
from drivers.source import AccessUnitSink, Source, StateCallback
from edge.bus import topics
from edge.bus.client import BusClient, RequestError
from edge.bus.messages import (
    DroneVideo,
    GbBye,
    GbDeviceStatus,
    GbInvite,
    GbKeyframe,
    GbPlatformInfo,
    Reply,
)
from edge.config import CameraConfig, ConfigError, DroneSourceConfig, RtspSourceConfig, SourceSpec
from edge.config.cameras import Gb28181SourceConfig, OnvifSourceConfig

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


@source_kind(Gb28181SourceConfig)
def _gb28181(spec: Gb28181SourceConfig, setup: SourceSetup) -> Source:
    link = GbServiceLink(setup.bus, spec, setup.log, stream=setup.name)
    return GbSource(name=setup.name, plan=link.plan, invite=link.invite, bye=link.bye,
                    keyframe=link.keyframe, ended=link.ended, online=link.online,
                    sink=setup.sink,
                    on_state=setup.on_state)


# Beyond the service's own limit for a device's answer: the bus round trip and its work.
GB_REPLY_MARGIN_S = 2.0


class GbServiceLink:
    """A gb28181 camera's bus side: the service's settings, INVITE, BYE and keyframes by
    request, and the device's status for the sessions it ended.

    Each INVITE names this process (its bus epoch) and `stream`, so the service can end
    what a killed or restarted camera process left open (see `edge.services.gb28181`).
    """

    def __init__(self, bus: BusClient, spec: Gb28181SourceConfig, log: logging.Logger, *,
                 stream: str = "") -> None:
        self.bus = bus
        self.spec = spec
        self.log = log
        self.stream = stream
        self.request_timeout_s = 8.0

    async def plan(self) -> MediaPlan:
        """The service's latest settings (the broker's cache has them; else wait)."""
        info: GbPlatformInfo | None = None
        sub = self.bus.subscribe(topics.GB_PLATFORM_INFO)
        try:
            async for env in sub:
                if isinstance(env.message, GbPlatformInfo):
                    info = env.message
                    break
        finally:
            sub.close()
        if info is None:  # the subscription ended: the client is closing
            raise GbSourceError(f"no settings from the {topics.GB28181_SERVICE} service")
        self.request_timeout_s = info.request_timeout_s
        return MediaPlan(transport=self.spec.transport or info.invite_transport,
                         bind_host=info.media_bind,
                         ports=(info.rtp_port_min, info.rtp_port_max),
                         no_media_s=info.no_media_s)

    async def invite(self, plan: MediaPlan, port: int) -> Invited:
        request = GbInvite(device_id=self.spec.device_id, channel_id=self.spec.channel_id,
                           port=port, transport=plan.transport, epoch=self.bus.epoch,
                           stream=self.stream)
        reply = await self._ask(request, self.request_timeout_s + GB_REPLY_MARGIN_S)
        data = reply.data
        session_id = data.get("session_id")
        ssrc = data.get("ssrc")
        if not isinstance(session_id, str) or not session_id:
            raise GbSourceError("the gb28181 service's reply to INVITE has no session")
        device_port = data.get("device_port")
        return Invited(session_id=session_id, ssrc=ssrc if isinstance(ssrc, int) else None,
                       device_host=str(data.get("device_host") or ""),
                       device_port=device_port if isinstance(device_port, int) else 0)

    async def bye(self, session_id: str) -> None:
        await self._ask(GbBye(session_id=session_id), self.request_timeout_s + GB_REPLY_MARGIN_S)

    async def keyframe(self) -> None:
        """Ask the channel for a keyframe now; `GbSourceError` with the reason if not taken."""
        await self._ask(GbKeyframe(device_id=self.spec.device_id,
                                   channel_id=self.spec.channel_id),
                        self.request_timeout_s + GB_REPLY_MARGIN_S)

    async def ended(self, session_id: str) -> str | None:
        """Once the service lists `session_id` as ended without our asking (the device's
        BYE, ...): why. None if the bus client closes first. The device's status is a
        state topic, so an end that came before this call is in the cached one."""
        async with contextlib.aclosing(self._statuses()) as statuses:
            async for status in statuses:
                for end in status.ended:
                    if end.session_id == session_id:
                        return end.reason or "the gb28181 service ended the session"
        return None

    async def online(self) -> bool:
        """True once the device's status turns online after it was not; False if the bus
        client closes first. The status is a state topic: its first message is the
        current one, so an online device waits for its next registration."""
        was_online: bool | None = None
        async with contextlib.aclosing(self._statuses()) as statuses:
            async for status in statuses:
                online = status.state == "online"
                if online and was_online is False:
                    return True
                was_online = online
        return False

    async def _statuses(self) -> AsyncGenerator[GbDeviceStatus, None]:
        """The device's status messages, the cached one first, until the client closes."""
        sub = self.bus.subscribe(topics.gb_status(self.spec.device_id))
        try:
            async for env in sub:
                if isinstance(env.message, GbDeviceStatus):
                    yield env.message
        finally:
            sub.close()

    async def _ask(self, request: GbInvite | GbBye | GbKeyframe, timeout: float) -> Reply:
        try:
            env = await self.bus.request(topics.GB28181_SERVICE, request, timeout=timeout)
        except RequestError as exc:  # includes the timeout
            raise GbSourceError(f"gb28181 service: {exc}") from None
        reply = env.message
        if not isinstance(reply, Reply):
            raise GbSourceError(f"gb28181 service answered {env.header.type}, not a reply")
        if reply.status != "accepted":
            raise GbSourceError(reply.detail or f"gb28181 service: {reply.status}")
        return reply


@source_kind(OnvifSourceConfig)
def _onvif(spec: OnvifSourceConfig, setup: SourceSetup) -> Source:
    from drivers.onvif.source import OnvifSource  # onvif-zeep-async is big: only when used
    from drivers.onvif.uri_memory import UriMemory

    # Starting on last time's URI saves the seconds a device takes to answer (issue 17).
    return OnvifSource(spec.onvif, setup.credentials, spec.profile,
                       lambda url, sink, on_state: _rtsp_at(url, setup, sink, on_state),
                       name=setup.name, sink=setup.sink, on_state=setup.on_state,
                       memory=UriMemory())
