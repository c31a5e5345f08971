"""The centre's end of the link probes: every probe goes back to where it came from.

Each WAN's prober on the vehicle sends here from its own source address, so the
reply, addressed to that source, returns by the same WAN. The reply is the probe
with its kind byte turned into ``REPLY`` (:func:`edge.links.probe_wire.reply_to`):
the same length (nothing is amplified), and never answered itself, so no two
responders can be set reflecting one datagram at each other.

Anything else (garbage, replies, other versions, a source port of 0) is counted as
malformed and dropped; nothing a datagram holds can raise. Replies are plain
non-blocking sends: if the socket's buffer is full the reply is dropped and counted
(the prober counts it lost), rather than queued without bound behind a flood.
"""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass

from edge.links import probe_wire
from edge.links.probe_socket import (
    SocketFactory,
    address_family,
    check_port,
    close_watched,
    default_factory,
    open_udp,
)

_READ_BATCH = 256  # datagrams per wake-up before other callbacks get a turn


@dataclass(slots=True)
class ResponderCounters:
    reflected: int = 0
    malformed: int = 0
    send_errors: int = 0


class ProbeResponder:
    def __init__(self) -> None:
        self.counters = ResponderCounters()
        self._sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self, host: str, port: int, *,
                    sock_factory: SocketFactory | None = None) -> None:
        """Answer probes on (`host`, `port`) (port 0: any; see :attr:`address`).

        `sock_factory` makes the unbound socket (default: in this network namespace).
        Raises ``ValueError`` for a bad address and
        :class:`~edge.links.probe_socket.ProbeSocketError` if it cannot bind, each
        with a one-line message.
        """
        if self._sock is not None:
            raise RuntimeError("the probe responder was started already")
        family = address_family(host, "probe responder address")
        sock = open_udp(family, host, check_port(port, "probe responder"),
                        factory=sock_factory or default_factory)
        self._loop = asyncio.get_running_loop()
        self._sock = sock
        self._loop.add_reader(sock.fileno(), self._on_readable, sock)

    @property
    def address(self) -> tuple[str, int]:
        """The (host, port) it answers on."""
        if self._sock is None:
            raise RuntimeError("the probe responder is not started")
        host, port = self._sock.getsockname()[:2]
        return host, port

    def close(self) -> None:
        """Stop answering and close the socket. Idempotent."""
        sock, self._sock = self._sock, None
        if sock is not None:
            close_watched(self._loop, sock)

    def _on_readable(self, sock: socket.socket) -> None:
        for _ in range(_READ_BATCH):
            try:
                # one byte more than a probe, so a longer datagram is seen as one
                data, peer = sock.recvfrom(probe_wire.SIZE + 1)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                # an ICMP error queued for an earlier reply (Linux reports some on
                # unconnected sockets too): nothing to do but read on
                self.counters.send_errors += 1
                continue
            reply = probe_wire.reply_to(data)
            if reply is None or peer[1] == 0:
                self.counters.malformed += 1
                continue
            try:
                sock.sendto(reply, peer)
            except OSError:
                self.counters.send_errors += 1
                continue
            self.counters.reflected += 1
