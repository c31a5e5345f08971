"""Probes one WAN: a UDP socket bound to that WAN, `rate_hz` probes a second to the
centre's responder, replies fed to :class:`ProbeStats`.

The socket is bound to the WAN's source address (the vehicle's policy routing sends
a packet from that address out of that WAN, outside the tunnel) and, when an
interface is named, to the interface too (SO_BINDTODEVICE, which needs
CAP_NET_RAW). It is plain non-blocking: sends are direct ``sendto`` calls (UDP
never waits; a full buffer is an error like any other) and replies are read by a
reader callback on the event loop.

A failure to make the socket or to send (the WAN's interface or address is gone:
ENETUNREACH, EADDRNOTAVAIL) never stops the prober: that probe counts as sent and
lost, the reason is the snapshot's ``error``, the link goes down by the usual rule,
and the next tick tries again, so the link comes back by itself when the WAN does.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import replace

from edge.links import probe_wire
from edge.links.probe_socket import (
    ProbeSocketError,
    SocketFactory,
    address_family,
    check_interface,
    check_port,
    close_watched,
    default_factory,
    open_udp,
    send_error,
)
from edge.links.probe_stats import LinkSnapshot, ProbeSettings, ProbeStats

__all__ = ["LinkProber", "LinkSnapshot", "ProbeSettings"]

log = logging.getLogger(__name__)
_READ_BATCH = 64  # datagrams read per wake-up before other callbacks get a turn
# Woken this much later than planned, the prober's own process was held up.
STALL_S = 0.1
_MAX_RATE_HZ = 1000.0
_U32 = 0xFFFF_FFFF
_GONE = (errno.ENODEV, errno.ENXIO)  # a socket bound to a vanished interface stays broken


class LinkProber:
    """Probes `target` (the centre's responder, an IP address and port) over one WAN."""

    def __init__(self, link_id: str, target: tuple[str, int], *, source: str | None = None,
                 interface: str | None = None, rate_hz: float = 10.0,
                 settings: ProbeSettings | None = None,
                 on_change: Callable[[LinkSnapshot], None] | None = None,
                 sock_factory: SocketFactory | None = None) -> None:
        """`on_change` is called, synchronously, with the new snapshot at each change of
        state. `sock_factory` makes the unbound socket (default: ``socket.socket`` in this
        network namespace); the prober binds it and owns it."""
        if not link_id:
            raise ValueError("a prober needs a link id")
        host, port = target
        self._family = address_family(host, "probe target")
        if check_port(port, "probe target") == 0:
            raise ValueError("probe target port 0: expected 1..65535")
        if source is not None and address_family(source, "probe source") != self._family:
            raise ValueError(f"probe source {source} and target {host} are not of one "
                             "address family")
        if not 0 < rate_hz <= _MAX_RATE_HZ:
            raise ValueError(f"probe rate {rate_hz} Hz: expected more than 0, "
                             f"at most {_MAX_RATE_HZ:g}")
        self.link_id = link_id
        self.target = (host, port)
        self.source = source
        self.interface = check_interface(interface) if interface is not None else None
        self.rate_hz = rate_hz
        self._target_ip = ipaddress.ip_address(host)
        self._tag = probe_wire.link_tag(link_id)
        self._on_change = on_change
        self._factory = sock_factory or default_factory
        self._stats = ProbeStats(settings, now=time.monotonic())
        self._sock: socket.socket | None = None
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake = asyncio.Event()
        self._seq = 0
        self._malformed = 0
        self._error: str | None = None
        self._closed = False

    # -- life ----------------------------------------------------------------------------
    def start(self) -> None:
        """Start probing in the running event loop."""
        if self._task is not None or self._closed:
            raise RuntimeError(f"prober {self.link_id} was started already")
        self._loop = asyncio.get_running_loop()
        self._task = self._loop.create_task(self._run(), name=f"probe-{self.link_id}")

    async def close(self) -> None:
        """Stop probing and close the socket. Idempotent; :meth:`snapshot` still works."""
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    self._close_socket()
                    raise  # our caller was cancelled too: that one is not ours to eat
        self._close_socket()

    # -- what callers read ---------------------------------------------------------------
    def snapshot(self) -> LinkSnapshot:
        """The link now (``since`` on ``time.monotonic``)."""
        return replace(self._stats.snapshot(time.monotonic()), malformed=self._malformed,
                       error=self._error)

    @property
    def local_address(self) -> tuple[str, int] | None:
        """Where the probes leave from (and replies must arrive), once the socket is bound."""
        if self._sock is None:
            return None
        host, port = self._sock.getsockname()[:2]
        return host, port

    # -- sending -------------------------------------------------------------------------
    async def _run(self) -> None:
        period = 1 / self.rate_hz
        next_send = wake = time.monotonic()
        while True:
            now = time.monotonic()
            if now - wake > STALL_S:
                # Woken this late, the loop (or the machine) was held up: what answered
                # meanwhile waits in the socket, and the silence was ours, not the link's.
                self._stats.excuse(now)
            if self._sock is not None:
                self._on_readable(self._sock)
            if now >= next_send:
                self._send()
                next_send += period
                if next_send <= now:  # the loop was held up: skip, never send a burst
                    next_send = now + period
            self._evaluate(time.monotonic())
            wake = min(next_send, self._stats.next_check())
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, wake - time.monotonic())):
                    await self._wake.wait()

    def _send(self) -> None:
        now_ns = time.monotonic_ns()
        now = now_ns / 1e9
        seq, self._seq = self._seq, (self._seq + 1) & _U32
        sock = self._socket()
        if sock is None:
            self._stats.sent(seq, now, failed=True)
            return
        data = probe_wire.encode(probe_wire.Probe(self._tag, seq, now_ns))
        try:
            sock.sendto(data, self.target)
        except OSError as e:
            self._error = send_error(e)
            self._stats.sent(seq, now, failed=True)
            if e.errno in _GONE:
                self._close_socket()  # made again on the next tick, on the new interface
            return
        self._error = None
        self._stats.sent(seq, now, stamp=now_ns)

    def _socket(self) -> socket.socket | None:
        """The bound socket, made now if there is none; None (and `error` set) if it cannot be."""
        if self._sock is not None:
            return self._sock
        host = self.source or ("::" if self._family == socket.AF_INET6 else "0.0.0.0")
        try:
            sock = open_udp(self._family, host, 0, interface=self.interface,
                            factory=self._factory)
        except ProbeSocketError as e:
            self._error = e.strerror
            return None
        assert self._loop is not None
        self._sock = sock
        self._loop.add_reader(sock.fileno(), self._on_readable, sock)
        return sock

    def _close_socket(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            close_watched(self._loop, sock)

    # -- receiving -----------------------------------------------------------------------
    def _on_readable(self, sock: socket.socket) -> None:
        for _ in range(_READ_BATCH):
            try:
                # one byte more than a probe, so a longer datagram is seen as one
                data, peer = sock.recvfrom(probe_wire.SIZE + 1)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as e:
                self._error = f"receive failed: {e.strerror or e}"
                break
            self._take(data, peer, time.monotonic())
        self._evaluate(time.monotonic())

    def _take(self, data: bytes, peer: tuple[str, int], now: float) -> None:
        probe = probe_wire.parse(data)
        if (probe is None or probe.kind != probe_wire.REPLY or probe.link != self._tag
                or not self._from_target(peer)):
            self._malformed += 1
            return
        if self._stats.reply(probe.seq, now, stamp=probe.sent_ns) == "mismatch":
            self._malformed += 1

    def _from_target(self, peer: tuple[str, int]) -> bool:
        try:
            return ipaddress.ip_address(peer[0]) == self._target_ip and peer[1] == self.target[1]
        except ValueError:
            return False

    # -- state ---------------------------------------------------------------------------
    def _evaluate(self, now: float) -> None:
        if not self._stats.update(now):
            return
        self._wake.set()  # the next deadline moved: the send loop recomputes its sleep
        if self._on_change is None:
            return
        try:
            self._on_change(self.snapshot())
        except Exception as e:  # the caller's bug must not stop the probes
            log.error("link %s: on_change callback failed: %r", self.link_id, e)
