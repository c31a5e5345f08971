"""SIP over UDP and TCP with asyncio (RFC 3261 §18): listeners that deliver parsed
messages with the peer they came from, and `send()` back over the same transport.

A device behind a carrier NAT can only be reached where its packets came from, so a
TCP message goes back on the connection the device opened (we open one only when none
is up), and a UDP one to the datagram's source address, never to the Contact.

The TCP side is open to anyone who can reach the port, so it is bounded: at most
`max_connections` connections opened to us at a time (more are closed at once, with a
rate-limited log line), and one on which no message arrives for `idle_timeout` s is
closed unless `in_use(peer)` says a registered device speaks there (bytes that make no
whole message do not count: a trickle would otherwise hold a connection for ever).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from drivers.gb28181.sip_message import (
    MAX_MESSAGE_BYTES,
    SipParseError,
    SipRequest,
    SipResponse,
    StreamFramer,
    parse_message,
)

log = logging.getLogger(__name__)

TransportName = Literal["udp", "tcp"]
CONNECT_TIMEOUT = 5.0
MAX_TCP_CONNECTIONS = 256
"""Connections opened to us at a time (devices, each one; a scan or a flood, many)."""
TCP_IDLE_TIMEOUT = 120.0
"""Seconds a connection with no registered device may stay silent (two keepalive
intervals of the standard's 60 s: a device registering on it has long since spoken)."""
LOG_EVERY_S = 10.0
PICK_PORT_TRIES = 20
"""At most one log line per kind of refusal in this time, with the count since the last."""


@dataclass(frozen=True)
class Peer:
    """Where a message came from, and so where its answer goes."""

    transport: TransportName
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.transport}:{self.host}:{self.port}"


OnMessage = Callable[[SipRequest | SipResponse, Peer], None]
OnError = Callable[[str, Peer], None]
InUse = Callable[[Peer], bool]


class _Throttled:
    """A log line that repeats: the first at once, then one per `every` s with the count."""

    def __init__(self, level: int, every: float = LOG_EVERY_S) -> None:
        self.level = level
        self.every = every
        self.count = 0  # in all
        self._untold = 0
        self._last: float | None = None

    def __call__(self, text: str) -> None:
        self.count += 1
        self._untold += 1
        now = time.monotonic()
        if self._last is not None and now - self._last < self.every:
            return
        more = f" ({self._untold - 1} more like it in the last {self.every:g} s)" \
            if self._untold > 1 else ""
        log.log(self.level, "%s%s", text, more)
        self._last, self._untold = now, 0


class SipTransportError(ConnectionError):
    """A message could not be sent; `str()` says to whom and why."""


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, owner: SipTransport) -> None:
        self.owner = owner

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        peer = Peer("udp", addr[0], addr[1])
        if not data.strip(b"\r\n\x00 "):
            return  # NAT keepalive pings (CRLF or NUL) some devices send
        try:
            message = parse_message(data, max_bytes=self.owner.max_bytes)
        except SipParseError as exc:
            self.owner.report(str(exc), peer)
            return
        self.owner.deliver(message, peer)

    def error_received(self, exc: Exception) -> None:
        # An ICMP port unreachable from a device gone away: the transaction's timer tells.
        log.debug("udp error: %s", exc)


class SipTransport:
    """UDP and/or TCP listeners on one host and port."""

    def __init__(self, on_message: OnMessage, on_error: OnError | None = None, *,
                 max_bytes: int = MAX_MESSAGE_BYTES,
                 max_connections: int = MAX_TCP_CONNECTIONS,
                 idle_timeout: float | None = None, in_use: InUse | None = None) -> None:
        """`idle_timeout` None: connections opened to us are never closed for silence."""
        if max_connections < 1:
            raise ValueError(f"max_connections must be at least 1, got {max_connections}")
        if idle_timeout is not None and not idle_timeout > 0:
            raise ValueError(f"idle_timeout must be more than 0 s, got {idle_timeout:g}")
        self.on_message = on_message
        self.on_error = on_error
        self.max_bytes = max_bytes
        self.max_connections = max_connections
        self.idle_timeout = idle_timeout
        self.in_use = in_use
        self._udp: asyncio.DatagramTransport | None = None
        self._server: asyncio.Server | None = None
        self._streams: dict[Peer, asyncio.StreamWriter] = {}
        self._accepted_peers: set[Peer] = set()  # connections opened to us, open now
        self._refusing = _Throttled(logging.WARNING)
        self._idling = _Throttled(logging.INFO)
        self._readers: set[asyncio.Task[None]] = set()
        self._closed = False
        self.udp_address: tuple[str, int] | None = None
        self.tcp_address: tuple[str, int] | None = None

    async def start(self, host: str = "0.0.0.0", port: int = 5060, *, udp: bool = True,
                    tcp: bool = True) -> None:
        """Listen; with port 0 both transports share the port the first one got."""
        loop = asyncio.get_running_loop()
        # Port 0: the UDP port the kernel picks may be some TCP socket's already (an
        # outgoing connection's source port): then pick another, a few times.
        tries = PICK_PORT_TRIES if port == 0 and udp and tcp else 1
        for attempt in range(1, tries + 1):
            chosen = port
            if udp:
                transport, _ = await loop.create_datagram_endpoint(
                    lambda: _Udp(self), local_addr=(host, port))
                self._udp = transport
                self.udp_address = transport.get_extra_info("sockname")[:2]
                chosen = port or self.udp_address[1]
            if not tcp:
                return
            try:
                self._server = await asyncio.start_server(self._accepted, host, chosen,
                                                          reuse_address=True)
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE or attempt == tries:
                    if self._udp is not None:
                        self._udp.close()
                        self._udp, self.udp_address = None, None
                    raise
                assert self._udp is not None
                self._udp.close()
                continue
            self.tcp_address = self._server.sockets[0].getsockname()[:2]
            return

    def report(self, reason: str, peer: Peer) -> None:
        if self.on_error is not None:
            self.on_error(reason, peer)
        else:
            log.warning("bad SIP from %s: %s", peer, reason)

    def deliver(self, message: SipRequest | SipResponse, peer: Peer) -> None:
        try:
            self.on_message(message, peer)
        except SipParseError as exc:
            # A handler that met a field it could not read: the same as bad input.
            self.report(str(exc), peer)
        except Exception:
            # A bug of ours must cost one message, not the listener or a device's connection.
            log.exception("handling %r from %s failed", message, peer)

    @property
    def connections(self) -> int:
        """TCP connections opened to us, open now."""
        return len(self._accepted_peers)

    @property
    def refused_connections(self) -> int:
        """TCP connections closed at once since the start: `max_connections` were open."""
        return self._refusing.count

    @property
    def idle_closed(self) -> int:
        """TCP connections closed since the start for `idle_timeout` without a message."""
        return self._idling.count

    async def _accepted(self, reader: asyncio.StreamReader,
                        writer: asyncio.StreamWriter) -> None:
        peername = writer.get_extra_info("peername")
        peer = Peer("tcp", *peername[:2]) if peername else Peer("tcp", "?", 0)
        if len(self._accepted_peers) >= self.max_connections:
            self._refusing(f"refused a SIP connection from {peer}: "
                           f"{len(self._accepted_peers)} open, the most allowed "
                           f"(max_tcp_connections)")
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()
            return
        self._accepted_peers.add(peer)
        try:
            await self._read(peer, reader, writer, idle_timeout=self.idle_timeout)
        finally:
            self._accepted_peers.discard(peer)

    async def _read(self, peer: Peer, reader: asyncio.StreamReader,
                    writer: asyncio.StreamWriter, *, idle_timeout: float | None = None) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._readers.add(task)
        self._streams[peer] = writer
        framer = StreamFramer(self.max_bytes)
        loop = asyncio.get_running_loop()
        # Idle means no whole message: a byte now and then would otherwise hold a slot.
        last_message = loop.time()
        try:
            while not self._closed:
                deadline = None if idle_timeout is None else last_message + idle_timeout
                try:
                    async with asyncio.timeout_at(deadline):
                        data = await reader.read(65536)
                except TimeoutError:
                    if self.in_use is not None and self.in_use(peer):
                        last_message = loop.time()
                        continue
                    self._idling(f"closed the SIP connection from {peer}: no message for "
                                 f"{idle_timeout:g} s and no registered device on it")
                    break
                if not data:
                    break
                try:
                    messages = framer.feed(data)
                except SipParseError as exc:
                    self.report(f"{exc} (connection closed)", peer)
                    break
                if messages:
                    last_message = loop.time()
                for message in messages:
                    self.deliver(message, peer)
        except (ConnectionError, OSError) as exc:
            log.debug("tcp %s: %s", peer, exc)
        finally:
            if self._streams.get(peer) is writer:
                del self._streams[peer]
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()
            if task is not None:
                self._readers.discard(task)

    def connected(self, peer: Peer) -> bool:
        return peer in self._streams

    def local_address(self, peer: Peer) -> tuple[str, int]:
        """Our address as `peer` sees it, for Via and Contact."""
        if peer.transport == "tcp":
            writer = self._streams.get(peer)
            if writer is not None:
                host, _ = writer.get_extra_info("sockname")[:2]
                return host, self.tcp_address[1] if self.tcp_address else 0
            bound = self.tcp_address
        else:
            bound = self.udp_address
        if bound is None:
            raise SipTransportError(f"no {peer.transport} listener")
        host, port = bound
        if host in ("0.0.0.0", "::"):
            host = _route_source(peer.host)
        return host, port

    async def send(self, message: SipRequest | SipResponse, peer: Peer) -> None:
        if self._closed:
            raise SipTransportError(f"cannot send to {peer}: transport closed")
        data = message.to_bytes()
        if peer.transport == "udp":
            if self._udp is None:
                raise SipTransportError(f"cannot send to {peer}: no UDP listener")
            self._udp.sendto(data, (peer.host, peer.port))
            return
        writer = self._streams.get(peer)
        if writer is None:
            writer = await self._connect(peer)
        try:
            writer.write(data)
            await writer.drain()
        except (ConnectionError, OSError) as exc:
            raise SipTransportError(f"cannot send to {peer}: {exc}") from None

    async def _connect(self, peer: Peer) -> asyncio.StreamWriter:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(peer.host, peer.port), CONNECT_TIMEOUT)
        except (OSError, TimeoutError) as exc:
            raise SipTransportError(f"cannot connect to {peer}: {exc or 'timed out'}") from None
        self._streams[peer] = writer
        task = asyncio.create_task(self._read(peer, reader, writer))
        self._readers.add(task)
        return writer

    async def close(self) -> None:
        self._closed = True
        if self._udp is not None:
            self._udp.close()
        if self._server is not None:
            self._server.close()
        for writer in list(self._streams.values()):
            writer.close()
        for task in list(self._readers):
            task.cancel()
        if self._readers:
            await asyncio.gather(*self._readers, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)


def _route_source(host: str) -> str:
    """The local address the kernel would send to `host` from (no packet is sent)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect((host, 9))
            return str(probe.getsockname()[0])
        except OSError:
            return "127.0.0.1"
