"""A WAN interface's byte counters, turned into bit/s each way and bytes used.

The counters are read over route netlink (``RTM_GETLINK``, its ``IFLA_STATS64``) with
pyroute2's :class:`AsyncIPRoute`, in the network namespace of the netlink socket:
ours, or one made in another namespace and handed in. Not ``/sys/class/net``, which
shows the interfaces of the namespace that mounted ``/sys``, not necessarily ours.

:class:`ThroughputMeter` is the pure half: successive readings → rates. When the
interface is re-created (a USB modem re-enumerated: a new ifindex) or its counters
go backwards (reset by the driver), the reading starts over instead of giving a
huge or negative rate; the bytes used (``rx_total``/``tx_total``, for a metered
link's budget) keep what was counted before.
"""

from __future__ import annotations

import errno
import os
import socket
import time
from dataclasses import dataclass

from pyroute2 import AsyncIPRoute, NetlinkError

from edge.links.probe_socket import check_interface


class CounterError(Exception):
    """The counters could not be read; the message is one line."""


@dataclass(frozen=True, slots=True)
class CounterReading:
    ifindex: int
    rx_bytes: int
    tx_bytes: int
    at: float  # seconds, time.monotonic


@dataclass(frozen=True, slots=True)
class Throughput:
    """Rates between the last two readings (None: first reading, a reset, or an error).

    ``rx`` is what the interface received (down, centre → vehicle on a WAN), ``tx``
    what it sent (up).
    """

    rx_bps: float | None
    tx_bps: float | None
    rx_total: int  # bytes counted since the meter started, across resets
    tx_total: int
    error: str | None = None


class ThroughputMeter:
    def __init__(self) -> None:
        self._last: CounterReading | None = None
        self.rx_total = 0
        self.tx_total = 0

    def update(self, reading: CounterReading) -> Throughput:
        last, self._last = self._last, reading
        if (last is None or reading.ifindex != last.ifindex or reading.at <= last.at
                or reading.rx_bytes < last.rx_bytes or reading.tx_bytes < last.tx_bytes):
            return self.failed(None)
        rx, tx = reading.rx_bytes - last.rx_bytes, reading.tx_bytes - last.tx_bytes
        self.rx_total += rx
        self.tx_total += tx
        seconds = reading.at - last.at
        return Throughput(rx * 8 / seconds, tx * 8 / seconds, self.rx_total, self.tx_total)

    def failed(self, error: str | None) -> Throughput:
        """No rate now (the totals so far, and why)."""
        return Throughput(None, None, self.rx_total, self.tx_total, error)


class InterfaceCounters:
    """Reads one interface's counters; :meth:`sample` gives its throughput and never raises."""

    def __init__(self, interface: str, *, netlink: socket.socket | None = None) -> None:
        """`netlink`: a route netlink socket (``AF_NETLINK``, ``NETLINK_ROUTE``) made in
        the namespace to read, owned from then on; None reads this namespace."""
        self.interface = check_interface(interface)
        self.meter = ThroughputMeter()
        self._netlink = netlink
        self._ipr: AsyncIPRoute | None = None

    async def read(self) -> CounterReading:
        """The counters now. Raises :class:`CounterError` with a one-line reason."""
        if self._ipr is None:
            try:
                self._ipr = AsyncIPRoute(use_socket=self._netlink)
            except OSError as e:
                raise CounterError(f"cannot open netlink to read {self.interface}'s counters: "
                                   f"{os.strerror(e.errno or 0)}") from None
        try:
            (link,) = await self._ipr.link("get", ifname=self.interface)
        except NetlinkError as e:
            if e.code == errno.ENODEV:
                raise CounterError(f"no interface named {self.interface}") from None
            raise CounterError(f"cannot read {self.interface}'s counters: "
                               f"{os.strerror(e.code)}") from None
        except (OSError, ValueError) as e:
            self._drop_netlink()  # a broken socket: the next read opens another
            raise CounterError(f"cannot read {self.interface}'s counters: {e}") from None
        at = time.monotonic()
        stats = link.get("IFLA_STATS64")
        if stats is None:
            raise CounterError(f"{self.interface} has no 64-bit counters")
        return CounterReading(int(link["index"]), int(stats["rx_bytes"]),
                              int(stats["tx_bytes"]), at)

    async def sample(self) -> Throughput:
        """Read and turn into rates since the last sample; a failure is its ``error``."""
        try:
            reading = await self.read()
        except CounterError as e:
            return self.meter.failed(str(e))
        return self.meter.update(reading)

    def close(self) -> None:
        self._drop_netlink()
        if self._netlink is not None:
            self._netlink.close()  # pyroute2 leaves a socket it was given open
            self._netlink = None

    def _drop_netlink(self) -> None:
        ipr, self._ipr = self._ipr, None
        if ipr is not None:
            ipr.close()
