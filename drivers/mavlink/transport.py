"""Byte transports for MAVLink links, built on asyncio (no threads, no polling).

A connection string names one transport:

``udpin:HOST:PORT``
    bind and listen; replies go to every peer heard in the last
    ``UDP_PEER_TTL_S`` seconds (like ``mavutil``'s udpin, but more than one
    peer may talk to us).
``udpout:HOST:PORT``
    send to HOST:PORT, receive the replies on our ephemeral port.
``tcp:HOST:PORT``
    connect as a client; reconnect with back-off while the link is down.
``tcpin:HOST:PORT``
    listen; any number of clients; what we send goes to all of them.
``serial:DEVICE:BAUD``
    a serial port (``serial:/dev/ttyUSB0:57600``), raw mode, via termios.

The transport only moves bytes. Each remote peer gets its own stream so a
parser can keep per-peer state (one TCP client's half frame must not be glued
to another client's bytes). Sends never block: a peer whose socket buffer is
full has the excess dropped and counted, so one dead ground station cannot
stall the drone link.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import termios
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Literal

log = logging.getLogger(__name__)

PeerId = Hashable
DataCallback = Callable[[PeerId, bytes], None]
PeerLostCallback = Callable[[PeerId], None]

Kind = Literal["udpin", "udpout", "tcp", "tcpin", "serial"]

#: a UDP peer that has been silent this long no longer gets our traffic
UDP_PEER_TTL_S = 10.0
#: above this many queued bytes a stream peer is considered stuck; we drop
WRITE_BUFFER_LIMIT = 256 * 1024

_BAUD_RATES = {
    rate: getattr(termios, f"B{rate}")
    for rate in (9600, 19200, 38400, 57600, 115200, 230400, 460800, 500000, 921600, 1500000)
    if hasattr(termios, f"B{rate}")
}


@dataclass(frozen=True, slots=True)
class ConnectionSpec:
    """A parsed connection string."""

    kind: Kind
    host: str = ""
    port: int = 0
    device: str = ""
    baud: int = 0

    def __str__(self) -> str:
        if self.kind == "serial":
            return f"serial:{self.device}:{self.baud}"
        return f"{self.kind}:{self.host}:{self.port}"


def parse_connection(text: str) -> ConnectionSpec:
    """Parse ``udpin:HOST:PORT`` and friends; ``ValueError`` names what is wrong."""
    kind, sep, rest = text.strip().partition(":")
    kind = kind.lower()
    if not sep:
        raise ValueError(f"connection {text!r}: expected KIND:..., e.g. udpin:0.0.0.0:14550")
    if kind == "serial":
        device, _, baud_text = rest.rpartition(":")
        if not device or not baud_text.isdigit():
            raise ValueError(f"connection {text!r}: expected serial:DEVICE:BAUD")
        baud = int(baud_text)
        if baud not in _BAUD_RATES:
            raise ValueError(f"connection {text!r}: baud {baud} not one of {sorted(_BAUD_RATES)}")
        return ConnectionSpec("serial", device=device, baud=baud)
    if kind not in ("udpin", "udpout", "tcp", "tcpin"):
        raise ValueError(
            f"connection {text!r}: kind {kind!r} is not one of udpin, udpout, tcp, tcpin, serial"
        )
    host, _, port_text = rest.rpartition(":")
    host = host.strip("[]")
    if not host or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"connection {text!r}: expected {kind}:HOST:PORT")
    port = int(port_text)
    if port == 0 and kind in ("udpout", "tcp"):
        raise ValueError(f"connection {text!r}: a {kind} link needs the remote port")
    return ConnectionSpec(kind, host=host, port=port)  # type: ignore[arg-type]


class Transport(ABC):
    """Moves bytes to and from one or more peers."""

    #: True when one read is one whole datagram (a frame never spans two)
    datagram: bool = False

    def __init__(
        self,
        spec: ConnectionSpec,
        on_data: DataCallback,
        on_peer_lost: PeerLostCallback | None = None,
    ) -> None:
        self.spec = spec
        self._on_data = on_data
        self._on_peer_lost = on_peer_lost
        self.bytes_in = 0
        self.bytes_out = 0
        self.dropped_bytes = 0

    @abstractmethod
    async def start(self) -> None:
        """Bind, listen or connect. Raises ``OSError`` when that is impossible now."""

    @abstractmethod
    def send(self, data: bytes) -> None:
        """Send to every current peer; silently dropped when there is none."""

    @abstractmethod
    async def close(self) -> None:
        """Release every socket and task; idempotent."""

    @property
    @abstractmethod
    def peer_count(self) -> int:
        """Peers we would send to right now."""

    @property
    def local_address(self) -> tuple[str, int] | None:
        """Bound address (useful with port 0), when there is one."""
        return None

    def _received(self, peer: PeerId, data: bytes) -> None:
        self.bytes_in += len(data)
        try:
            self._on_data(peer, data)
        except Exception:  # a parser bug must not kill the transport
            log.exception("%s: receive callback failed", self.spec)

    def _lost(self, peer: PeerId) -> None:
        if self._on_peer_lost is not None:
            self._on_peer_lost(peer)


# --------------------------------------------------------------------------- UDP


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, owner: UdpTransport) -> None:
        self._owner = owner

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self._owner._datagram(data, addr)

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable while the far end is not up yet: expected
        self._owner.send_errors += 1


class UdpTransport(Transport):
    """``udpin`` (bound, learns peers) and ``udpout`` (fixed remote)."""

    datagram = True

    def __init__(
        self,
        spec: ConnectionSpec,
        on_data: DataCallback,
        on_peer_lost: PeerLostCallback | None = None,
    ) -> None:
        super().__init__(spec, on_data, on_peer_lost)
        self._transport: asyncio.DatagramTransport | None = None
        self._peers: dict[tuple[str, int], float] = {}
        self.send_errors = 0

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        if self.spec.kind == "udpin":
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _UdpProtocol(self), local_addr=(self.spec.host, self.spec.port)
            )
        else:
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _UdpProtocol(self), remote_addr=(self.spec.host, self.spec.port)
            )
        self._transport = transport

    def _datagram(self, data: bytes, addr: tuple[str, int]) -> None:
        peer = (addr[0], addr[1])
        self._peers[peer] = time.monotonic()
        self._received(peer, data)

    def send(self, data: bytes) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            self.dropped_bytes += len(data)
            return
        if self.spec.kind == "udpout":
            transport.sendto(data)
            self.bytes_out += len(data)
            return
        if not self._peers:
            self.dropped_bytes += len(data)
            return
        now = time.monotonic()
        for peer, seen in list(self._peers.items()):
            if now - seen > UDP_PEER_TTL_S:
                del self._peers[peer]
                self._lost(peer)
                continue
            transport.sendto(data, peer)
            self.bytes_out += len(data)

    async def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    @property
    def peer_count(self) -> int:
        if self.spec.kind == "udpout":
            return 1 if self._transport is not None else 0
        now = time.monotonic()
        return sum(1 for seen in self._peers.values() if now - seen <= UDP_PEER_TTL_S)

    @property
    def local_address(self) -> tuple[str, int] | None:
        if self._transport is None:
            return None
        host, port = self._transport.get_extra_info("sockname")[:2]
        return host, port


# --------------------------------------------------------------------------- streams


class _StreamProtocol(asyncio.Protocol):
    """One TCP connection (client side, or one accepted client)."""

    def __init__(self, owner: _StreamOwner, peer: PeerId) -> None:
        self._owner = owner
        self.peer = peer
        self.transport: asyncio.Transport | None = None
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self._owner._connected(self)

    def data_received(self, data: bytes) -> None:
        self._owner._received(self.peer, data)

    def connection_lost(self, exc: Exception | None) -> None:
        self._owner._disconnected(self)
        if not self.closed.done():
            self.closed.set_result(None)


class _StreamOwner(Transport):
    def __init__(
        self,
        spec: ConnectionSpec,
        on_data: DataCallback,
        on_peer_lost: PeerLostCallback | None = None,
    ) -> None:
        super().__init__(spec, on_data, on_peer_lost)
        self._conns: dict[PeerId, _StreamProtocol] = {}

    def _connected(self, proto: _StreamProtocol) -> None:
        self._conns[proto.peer] = proto

    def _disconnected(self, proto: _StreamProtocol) -> None:
        if self._conns.pop(proto.peer, None) is not None:
            self._lost(proto.peer)

    def send(self, data: bytes) -> None:
        if not self._conns:
            self.dropped_bytes += len(data)
            return
        for proto in list(self._conns.values()):
            transport = proto.transport
            if transport is None or transport.is_closing():
                continue
            if transport.get_write_buffer_size() > WRITE_BUFFER_LIMIT:
                self.dropped_bytes += len(data)
                continue
            transport.write(data)
            self.bytes_out += len(data)

    @property
    def peer_count(self) -> int:
        return len(self._conns)

    async def _close_conns(self) -> None:
        conns = list(self._conns.values())
        for proto in conns:
            if proto.transport is not None:
                proto.transport.close()
        for proto in conns:
            if proto.closed.done():
                continue
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await asyncio.shield(proto.closed)


class TcpClientTransport(_StreamOwner):
    """``tcp:HOST:PORT``: connects, and reconnects while the far end is away."""

    def __init__(
        self,
        spec: ConnectionSpec,
        on_data: DataCallback,
        on_peer_lost: PeerLostCallback | None = None,
        *,
        retry_min_s: float = 0.2,
        retry_max_s: float = 5.0,
    ) -> None:
        super().__init__(spec, on_data, on_peer_lost)
        self._retry_min_s = retry_min_s
        self._retry_max_s = retry_max_s
        self._task: asyncio.Task[None] | None = None
        self.connects = 0

    async def start(self) -> None:
        """Start connecting; returns at once (a vehicle may not be up yet)."""
        self._task = asyncio.create_task(self._run(), name=f"mavlink {self.spec}")

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        delay = self._retry_min_s
        while True:
            try:
                _, proto = await loop.create_connection(
                    lambda: _StreamProtocol(self, "server"), self.spec.host, self.spec.port
                )
            except OSError as exc:
                log.debug("%s: connect failed: %s", self.spec, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._retry_max_s)
                continue
            self.connects += 1
            delay = self._retry_min_s
            # shielded: cancelling this task must not cancel the protocol's own future
            await asyncio.shield(proto.closed)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._close_conns()


class TcpServerTransport(_StreamOwner):
    """``tcpin:HOST:PORT``: any number of clients."""

    def __init__(
        self,
        spec: ConnectionSpec,
        on_data: DataCallback,
        on_peer_lost: PeerLostCallback | None = None,
    ) -> None:
        super().__init__(spec, on_data, on_peer_lost)
        self._server: asyncio.Server | None = None
        self._ids = itertools.count(1)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _StreamProtocol(self, next(self._ids)), self.spec.host, self.spec.port
        )

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._close_conns()
            await self._server.wait_closed()
            self._server = None
        else:
            await self._close_conns()

    @property
    def local_address(self) -> tuple[str, int] | None:
        if self._server is None or not self._server.sockets:
            return None
        host, port = self._server.sockets[0].getsockname()[:2]
        return host, port


# --------------------------------------------------------------------------- serial


class SerialTransport(Transport):
    """``serial:DEVICE:BAUD`` through termios and the event loop's reader."""

    def __init__(
        self,
        spec: ConnectionSpec,
        on_data: DataCallback,
        on_peer_lost: PeerLostCallback | None = None,
    ) -> None:
        super().__init__(spec, on_data, on_peer_lost)
        self._fd: int | None = None
        self._out = bytearray()
        self._writing = False

    async def start(self) -> None:
        fd = os.open(self.spec.device, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        try:
            attrs = termios.tcgetattr(fd)
            speed = _BAUD_RATES[self.spec.baud]
            # raw 8N1, no flow control, no echo: cfmakeraw by hand
            attrs[0] = 0  # iflag
            attrs[1] = 0  # oflag
            attrs[2] = termios.CS8 | termios.CREAD | termios.CLOCAL  # cflag
            attrs[3] = 0  # lflag
            attrs[4] = speed
            attrs[5] = speed
            attrs[6][termios.VMIN] = 0
            attrs[6][termios.VTIME] = 0
            termios.tcsetattr(fd, termios.TCSANOW, attrs)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        asyncio.get_running_loop().add_reader(fd, self._readable)

    def _readable(self) -> None:
        if self._fd is None:
            return
        try:
            data = os.read(self._fd, 4096)
        except BlockingIOError:
            return
        except OSError as exc:
            log.warning("%s: read failed: %s", self.spec, exc)
            return
        if data:
            self._received("serial", data)

    def send(self, data: bytes) -> None:
        if self._fd is None:
            self.dropped_bytes += len(data)
            return
        if len(self._out) > WRITE_BUFFER_LIMIT:
            self.dropped_bytes += len(data)
            return
        self._out += data
        self._flush()

    def _flush(self) -> None:
        if self._fd is None:
            return
        while self._out:
            try:
                written = os.write(self._fd, self._out)
            except BlockingIOError:
                break
            except OSError as exc:
                log.warning("%s: write failed: %s", self.spec, exc)
                self.dropped_bytes += len(self._out)
                self._out.clear()
                break
            self.bytes_out += written
            del self._out[:written]
        loop = asyncio.get_running_loop()
        if self._out and not self._writing:
            loop.add_writer(self._fd, self._flush)
            self._writing = True
        elif not self._out and self._writing:
            loop.remove_writer(self._fd)
            self._writing = False

    async def close(self) -> None:
        if self._fd is None:
            return
        loop = asyncio.get_running_loop()
        loop.remove_reader(self._fd)
        if self._writing:
            loop.remove_writer(self._fd)
            self._writing = False
        os.close(self._fd)
        self._fd = None

    @property
    def peer_count(self) -> int:
        return 1 if self._fd is not None else 0


def open_transport(
    connection: str | ConnectionSpec,
    on_data: DataCallback,
    on_peer_lost: PeerLostCallback | None = None,
) -> Transport:
    """Build (not start) the transport a connection string names."""
    spec = parse_connection(connection) if isinstance(connection, str) else connection
    if spec.kind in ("udpin", "udpout"):
        return UdpTransport(spec, on_data, on_peer_lost)
    if spec.kind == "tcp":
        return TcpClientTransport(spec, on_data, on_peer_lost)
    if spec.kind == "tcpin":
        return TcpServerTransport(spec, on_data, on_peer_lost)
    return SerialTransport(spec, on_data, on_peer_lost)
