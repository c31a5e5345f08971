"""Relay a drone link to other ground stations, mavlink-router style.

Everything heard on the drone link goes, byte for byte, to every endpoint
(subject to its filters), so QGroundControl or MAVProxy connected to an
endpoint sees the vehicle as if directly attached: same system ids, same
sequence numbers, same signatures.

Endpoint modes:

``rw``
    what the endpoint sends goes to the drone link.
``ro``
    only harmless reads go to the drone (HEARTBEAT, parameter and mission
    *reads*, TIMESYNC, ...; the ``RO_PASS`` set). Everything else, commands
    first of all, is dropped and counted. Deny by default, so a message type
    added to MAVLink later cannot slip through.

Filters (``allow``/``deny``, by message name or id) apply in both
directions. With a signing key, command-class messages
(:data:`~drivers.mavlink.signing.COMMAND_MESSAGES`) from an endpoint must
carry a valid signature or are refused, counted and reported as a
:class:`~drivers.mavlink.events.SigningRefused` event. Endpoints do not hear
each other, and do not hear our own service's traffic.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal

from drivers.mavlink.connection import MavConnection
from drivers.mavlink.dialect import message_id
from drivers.mavlink.events import LinkEvent, SigningRefused
from drivers.mavlink.framing import Frame
from drivers.mavlink.link import DroneLink
from drivers.mavlink.signing import COMMAND_MESSAGES, Signing, load_key
from drivers.mavlink.transport import PeerId, parse_connection

log = logging.getLogger(__name__)

Mode = Literal["ro", "rw"]

#: what a read-only endpoint may still send to the vehicle
RO_PASS: frozenset[int] = frozenset(
    message_id(name)
    for name in (
        "HEARTBEAT",
        "PARAM_REQUEST_LIST",
        "PARAM_REQUEST_READ",
        "PARAM_EXT_REQUEST_LIST",
        "PARAM_EXT_REQUEST_READ",
        "MISSION_REQUEST_LIST",
        "MISSION_REQUEST",
        "MISSION_REQUEST_INT",
        "MISSION_ACK",
        "TIMESYNC",
        "SYSTEM_TIME",
        "PING",
        "AUTOPILOT_VERSION_REQUEST",
    )
)
#: at most one SigningRefused event per endpoint per this many seconds
_REFUSAL_EVENT_PERIOD_S = 1.0


def _ids(items: Iterable[str | int] | None) -> frozenset[int] | None:
    if items is None:
        return None
    ids = set()
    for item in items:
        try:
            ids.add(message_id(item))
        except KeyError:
            raise ValueError(f"unknown MAVLink message {item!r}") from None
    return frozenset(ids)


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One place to relay to: ``udpout:GCS:14550``, ``udpin:0.0.0.0:14551``, ``tcpin::5761``."""

    name: str
    connection: str
    mode: Mode = "ro"
    #: message ids let through (None: all)
    allow: frozenset[int] | None = None
    #: message ids never let through
    deny: frozenset[int] = frozenset()

    @classmethod
    def build(
        cls,
        name: str,
        connection: str,
        mode: str = "ro",
        *,
        allow: Iterable[str | int] | None = None,
        deny: Iterable[str | int] = (),
    ) -> Endpoint:
        """Validated constructor taking names or ids; ``ValueError`` says what is wrong."""
        if mode not in ("ro", "rw"):
            raise ValueError(f"endpoint {name!r}: mode must be 'ro' or 'rw', got {mode!r}")
        spec = parse_connection(connection)
        if spec.kind not in ("udpout", "udpin", "tcpin"):
            raise ValueError(f"endpoint {name!r}: {connection!r} must be udpout, udpin or tcpin")
        return cls(name, connection, mode, _ids(allow), _ids(deny) or frozenset())  # type: ignore[arg-type]

    def passes(self, msg_id: int) -> bool:
        return (self.allow is None or msg_id in self.allow) and msg_id not in self.deny


@dataclass(slots=True)
class EndpointStats:
    to_endpoint: int = 0
    from_endpoint: int = 0
    filtered: int = 0
    refused_ro: int = 0
    refused_unsigned: int = 0


@dataclass(slots=True)
class _Live:
    endpoint: Endpoint
    conn: MavConnection
    stats: EndpointStats = field(default_factory=EndpointStats)
    last_refusal_event: float = 0.0


class MavRouter:
    def __init__(
        self,
        link: DroneLink,
        endpoints: Iterable[Endpoint],
        *,
        signing_key: bytes | None = None,
        on_event: Callable[[LinkEvent], None] | None = None,
    ) -> None:
        self.link = link
        # a signed drone link means signed commands from endpoints too
        key = signing_key if signing_key else (link.signing.key if link.signing else None)
        self.signing = Signing(load_key(key)) if key else None
        self._emit = on_event if on_event is not None else link.emit
        self._live: list[_Live] = []
        for endpoint in endpoints:
            conn = MavConnection(
                endpoint.connection, decode=False, heartbeat_hz=0, signing=self.signing
            )
            live = _Live(endpoint, conn)
            conn.add_listener(self._from_endpoint(live))
            self._live.append(live)
        names = [lv.endpoint.name for lv in self._live]
        if len(set(names)) != len(names):
            raise ValueError(f"router endpoint names must be unique: {names}")

    @property
    def stats(self) -> dict[str, EndpointStats]:
        return {lv.endpoint.name: lv.stats for lv in self._live}

    def address(self, name: str) -> tuple[str, int] | None:
        for lv in self._live:
            if lv.endpoint.name == name:
                return lv.conn.transport.local_address
        raise KeyError(name)

    async def start(self) -> None:
        started: list[_Live] = []
        try:
            for lv in self._live:
                await lv.conn.start()
                started.append(lv)
        except BaseException:
            for lv in started:
                await lv.conn.close()
            raise
        self.link.add_frame_listener(self._from_drone)

    async def stop(self) -> None:
        self.link.remove_frame_listener(self._from_drone)
        await asyncio.gather(*(lv.conn.close() for lv in self._live))

    async def __aenter__(self) -> MavRouter:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _from_drone(self, frame: Frame) -> None:
        for lv in self._live:
            if lv.endpoint.passes(frame.msg_id):
                lv.conn.send_raw(frame.raw)
                lv.stats.to_endpoint += 1
            else:
                lv.stats.filtered += 1

    def _from_endpoint(self, lv: _Live) -> Callable[[Frame, PeerId], None]:
        def handle(frame: Frame, peer: PeerId) -> None:
            stats = lv.stats
            msg_id = frame.msg_id
            if not lv.endpoint.passes(msg_id):
                stats.filtered += 1
                return
            if lv.endpoint.mode == "ro" and msg_id not in RO_PASS:
                stats.refused_ro += 1
                return
            if self.signing is not None and msg_id in COMMAND_MESSAGES and frame.sig_ok is not True:
                stats.refused_unsigned += 1
                self.signing.stats.refused += 1
                now = time.monotonic()
                if now - lv.last_refusal_event >= _REFUSAL_EVENT_PERIOD_S:
                    lv.last_refusal_event = now
                    self._emit(
                        SigningRefused(
                            sysid=frame.sysid,
                            compid=frame.compid,
                            message=frame.name,
                            source=lv.endpoint.name,
                        )
                    )
                return
            stats.from_endpoint += 1
            self.link.send_raw(frame.raw)

        return handle
