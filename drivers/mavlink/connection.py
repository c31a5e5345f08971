"""A MAVLink connection: a transport, a parser per peer, and our identity.

``MavConnection("udpin:0.0.0.0:14550")`` opens the transport, parses what
arrives into :class:`~drivers.mavlink.framing.Frame` objects, and packs what
we send with our own system/component id (the GCS default is 255 /
MAV_COMP_ID_MISSIONPLANNER), signing it when a key is set. With
``heartbeat_hz`` > 0 it sends our HEARTBEAT on a timer, which a vehicle
needs to see before it treats us as a ground station (and which, on a
``udpout`` link, is how the vehicle learns our address).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from drivers.mavlink.dialect import MAVLink, MAVLinkMessage, mavlink
from drivers.mavlink.framing import Frame, FrameParser, FrameStats
from drivers.mavlink.signing import Signing
from drivers.mavlink.transport import (
    ConnectionSpec,
    PeerId,
    Transport,
    open_transport,
    parse_connection,
)

log = logging.getLogger(__name__)

FrameCallback = Callable[[Frame, PeerId], None]

GCS_SYSTEM_ID = 255
GCS_COMPONENT_ID = mavlink.MAV_COMP_ID_MISSIONPLANNER


class _Sink:
    """pymavlink wants a file to write to; we pack and send ourselves."""

    def write(self, data: bytes) -> None:  # pragma: no cover - never used
        raise RuntimeError("MavConnection packs messages itself")


class MavConnection:
    def __init__(
        self,
        connection: str | ConnectionSpec,
        *,
        source_system: int = GCS_SYSTEM_ID,
        source_component: int = GCS_COMPONENT_ID,
        signing: Signing | None = None,
        decode: bool = True,
        heartbeat_hz: float = 1.0,
        heartbeat: Callable[[MAVLink], MAVLinkMessage] | None = None,
    ) -> None:
        if not 1 <= source_system <= 255 or not 0 <= source_component <= 255:
            raise ValueError(f"bad MAVLink identity {source_system}/{source_component}")
        self.spec = parse_connection(connection) if isinstance(connection, str) else connection
        self.signing = signing
        self.encoder = self.make_encoder(source_component, source_system)
        self.stats = FrameStats()
        self._decode = decode
        self._parsers: dict[PeerId, FrameParser] = {}
        self._listeners: list[FrameCallback] = []
        self._heartbeat_hz = heartbeat_hz
        self._heartbeat = heartbeat or gcs_heartbeat
        self._heartbeat_task: asyncio.Task[None] | None = None
        self.transport: Transport = open_transport(self.spec, self._on_data, self._on_peer_lost)
        self.messages_sent = 0
        self._sent_listeners: list[Callable[[bytes], None]] = []

    # ------------------------------------------------------------------ setup

    def make_encoder(self, source_component: int, source_system: int | None = None) -> MAVLink:
        """A pymavlink packer for one of our components (signing if we sign)."""
        sysid = self.encoder.srcSystem if source_system is None else source_system
        encoder = MAVLink(_Sink(), srcSystem=sysid, srcComponent=source_component)
        if self.signing is not None:
            self.signing.attach(encoder)
        return encoder

    def add_listener(self, callback: FrameCallback) -> None:
        self._listeners.append(callback)

    def remove_listener(self, callback: FrameCallback) -> None:
        with contextlib.suppress(ValueError):
            self._listeners.remove(callback)

    async def start(self) -> None:
        await self.transport.start()
        if self._heartbeat_hz > 0:
            self._heartbeat_task = asyncio.create_task(
                self._heartbeats(), name=f"heartbeat {self.spec}"
            )

    async def close(self) -> None:
        if self._heartbeat_task is not None:
            self._heartbeat_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat_task
            self._heartbeat_task = None
        await self.transport.close()

    async def __aenter__(self) -> MavConnection:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------------ sending

    def pack(self, msg: MAVLinkMessage, encoder: MAVLink | None = None) -> bytes:
        """Serialise with our identity and the next sequence number (signed if set)."""
        enc = self.encoder if encoder is None else encoder
        if enc.signing.sign_outgoing:
            Signing.refresh(enc)
        data = bytes(msg.pack(enc))
        enc.seq = (enc.seq + 1) & 0xFF
        return data

    def send(self, msg: MAVLinkMessage, encoder: MAVLink | None = None) -> None:
        data = self.pack(msg, encoder)
        self.transport.send(data)
        self.messages_sent += 1
        for listener in self._sent_listeners:
            listener(data)

    def send_raw(self, data: bytes) -> None:
        """Forward bytes unchanged (a router relaying someone else's frames)."""
        self.transport.send(data)
        for listener in self._sent_listeners:
            listener(data)

    def add_sent_listener(self, callback: Callable[[bytes], None]) -> None:
        """Called with every frame we send, ours or relayed (for a log of the link)."""
        self._sent_listeners.append(callback)

    async def _heartbeats(self) -> None:
        period = 1.0 / self._heartbeat_hz
        while True:
            try:
                self.send(self._heartbeat(self.encoder))
            except Exception:  # never let a send error end the heartbeat
                log.exception("%s: heartbeat failed", self.spec)
            await asyncio.sleep(period)

    # ------------------------------------------------------------------ receiving

    def _on_data(self, peer: PeerId, data: bytes) -> None:
        parser = self._parsers.get(peer)
        if parser is None:
            parser = FrameParser(
                decode=self._decode,
                check_signature=self.signing.check if self.signing is not None else None,
                stats=self.stats,
            )
            self._parsers[peer] = parser
        frames = parser.feed(data, datagram=self.transport.datagram)
        for frame in frames:
            for listener in self._listeners:
                try:
                    listener(frame, peer)
                except Exception:  # one bad handler must not starve the others
                    log.exception("%s: frame listener failed on %r", self.spec, frame)

    def _on_peer_lost(self, peer: PeerId) -> None:
        self._parsers.pop(peer, None)


def gcs_heartbeat(encoder: MAVLink) -> MAVLinkMessage:
    return encoder.heartbeat_encode(
        mavlink.MAV_TYPE_GCS, mavlink.MAV_AUTOPILOT_INVALID, 0, 0, mavlink.MAV_STATE_ACTIVE
    )
