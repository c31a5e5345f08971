"""SIP over UDP and TCP with asyncio (RFC 3261 §18): listeners that deliver parsed
messages with the peer they came from, and `send()` back over the same transport.

A device behind a carrier NAT can only be reached where its packets came from, so a
TCP message goes back on the connection the device opened (we open one only when none
is up), and a UDP one to the datagram's source address, never to the Contact.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
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
                 max_bytes: int = MAX_MESSAGE_BYTES) -> None:
        self.on_message = on_message
        self.on_error = on_error
        self.max_bytes = max_bytes
        self._udp: asyncio.DatagramTransport | None = None
        self._server: asyncio.Server | None = None
        self._streams: dict[Peer, asyncio.StreamWriter] = {}
        self._readers: set[asyncio.Task[None]] = set()
        self._closed = False
        self.udp_address: tuple[str, int] | None = None
        self.tcp_address: tuple[str, int] | None = None

    async def start(self, host: str = "0.0.0.0", port: int = 5060, *, udp: bool = True,
                    tcp: bool = True) -> None:
        """Listen; with port 0 both transports share the port the first one got."""
        loop = asyncio.get_running_loop()
        if udp:
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _Udp(self), local_addr=(host, port))
            self._udp = transport
            self.udp_address = transport.get_extra_info("sockname")[:2]
            port = port or self.udp_address[1]
        if tcp:
            self._server = await asyncio.start_server(self._accepted, host, port,
                                                      reuse_address=True)
            self.tcp_address = self._server.sockets[0].getsockname()[:2]

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

    async def _accepted(self, reader: asyncio.StreamReader,
                        writer: asyncio.StreamWriter) -> None:
        host, port = writer.get_extra_info("peername")[:2]
        await self._read(Peer("tcp", host, port), reader, writer)

    async def _read(self, peer: Peer, reader: asyncio.StreamReader,
                    writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._readers.add(task)
        self._streams[peer] = writer
        framer = StreamFramer(self.max_bytes)
        try:
            while not self._closed:
                data = await reader.read(65536)
                if not data:
                    break
                try:
                    messages = framer.feed(data)
                except SipParseError as exc:
                    self.report(f"{exc} (connection closed)", peer)
                    break
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
