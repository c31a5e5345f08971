"""Which WAN carries the tunnel: one fwmark rule, one table, one route per destination.

The tunnel's own UDP packets carry its fwmark (``SO_MARK`` on wireguard-go's socket). A
rule sends marked packets to a table of ours, where the route to the centre's endpoint
goes out the active WAN. Switching WAN is one ``route replace`` in that table: atomic,
so no packet ever finds the table empty, and nothing else on the vehicle moves.

The rule's priority must come before any source-address rule (a WAN's own table, chosen
by its source address, as probes bound to a WAN use): wireguard-go asks for the route
*from the address of the WAN it used last* (below), and a source rule first would answer
"that WAN" and nothing would move.

What wireguard-go makes of a route change (its source, ``conn/bind_linux.go`` and
``device/sticky_linux.go``, v0.0.20220316 as Debian ships it, and experiments here): its
Linux bind is "sticky": each packet goes out with ``IP_PKTINFO`` naming the address *and
interface* the peer's last packet came in on, and the kernel then uses that interface
whatever our table says. It listens to IPv4 route changes; on one, it asks the kernel for
the route to each peer from that address with the tunnel's fwmark, and forgets the sticky
source if the answer leaves by another interface. So:

- the listener takes any route message numbered 1..65536 for the answer to one of its own
  questions and ignores it, and pyroute2 numbers its requests from 255 to 65535: our
  socket numbers its requests above that, or no change of ours would be heard;
- forgetting is not enough while the old WAN still works: the centre's packets in flight
  on it arrive after the change and pin the source back there (a 100 Hz echo did, every
  time). After :meth:`Steering.steer`, the caller moves the tunnel to a new local port
  (:meth:`edge.links.wireguard.WireGuardTunnel.rebind`): a new socket forgets every
  sticky source, and what the old WAN still delivers goes to a closed port;
- IPv4 only (the listener skips IPv6 endpoints), in the namespace wireguard-go runs in.

Everything works on the current network namespace.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType

from pyroute2 import AsyncIPRoute, NetlinkError
from pyroute2.common import AddrPool

DEFAULT_TABLE = 200
DEFAULT_PRIORITY = 900  # before the emulated world's source rules (1000 + i)
_RESERVED_TABLES = {0, 253, 254, 255}  # unspec, default, main, local
_ALL_BITS = 0xFFFFFFFF
# our netlink sequence numbers: above wireguard-go's MaxPeers (1 << 16), see open()
_FIRST_SEQ = 0x10001
_LAST_SEQ = 0x1FFFF


class SteeringError(RuntimeError):
    """Policy routing failed; `str()` is one line for an operator."""


@dataclass(frozen=True, slots=True)
class Wan:
    """A WAN the tunnel may use: its interface, next hop (None: on-link) and address."""

    name: str
    interface: str
    gateway: str | None
    source: str


def _ipv4(value: str, what: str) -> str:
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        raise ValueError(f"{what} {value!r} is not an IP address") from None
    if address.version != 4:
        # wireguard-go's route listener re-resolves IPv4 endpoints only
        raise ValueError(f"{what} {value!r}: only IPv4 can be steered (wireguard-go "
                         "follows route changes for IPv4 endpoints only)")
    return str(address)


def _check(fwmark: int, wans: Sequence[Wan], table: int, priority: int) -> None:
    if not 0 < fwmark <= _ALL_BITS:
        raise ValueError(f"fwmark {fwmark} must be 1..{_ALL_BITS} (0 marks nothing)")
    if not 0 < table <= _ALL_BITS or table in _RESERVED_TABLES:
        raise ValueError(f"routing table {table} is reserved or out of range "
                         "(not 0, 253, 254 or 255)")
    if not 0 < priority < 32766:
        raise ValueError(f"rule priority {priority} must be 1..32765 (before main)")
    if not wans:
        raise ValueError("steering needs at least one WAN")
    names = [w.name for w in wans]
    if len(set(names)) != len(names):
        raise ValueError(f"WAN names must differ, got {', '.join(names)}")
    for w in wans:
        _ipv4(w.source, f"WAN {w.name!r}: source address")
        if w.gateway is not None:
            _ipv4(w.gateway, f"WAN {w.name!r}: gateway")


def _destination(value: str) -> ipaddress.IPv4Network:
    try:
        net = ipaddress.ip_network(value, strict=True)
    except ValueError:
        raise ValueError(f"destination {value!r} is not an address or a prefix "
                         "(e.g. 198.19.0.1 or 198.19.0.0/24)") from None
    if not isinstance(net, ipaddress.IPv4Network):
        _ipv4(str(net.network_address), "destination")
    assert isinstance(net, ipaddress.IPv4Network)
    return net


class Steering:
    """The fwmark rule and our table's routes, in place between :meth:`open` and :meth:`close`."""

    def __init__(self, fwmark: int, wans: Sequence[Wan], *, table: int = DEFAULT_TABLE,
                 priority: int = DEFAULT_PRIORITY) -> None:
        _check(fwmark, wans, table, priority)
        self.fwmark = fwmark
        self.table = table
        self.priority = priority
        self.wans = {w.name: w for w in wans}
        #: destination → the WAN carrying it, for what we put in the table
        self.routes: dict[ipaddress.IPv4Network, str] = {}
        self._active: str | None = None
        self._ipr: AsyncIPRoute | None = None
        self._rule_installed = False

    @property
    def active(self) -> str | None:
        """The WAN of the last :meth:`steer`; None before it."""
        return self._active

    def _rule(self) -> dict[str, int]:
        return {"family": socket.AF_INET, "fwmark": self.fwmark, "fwmask": _ALL_BITS,
                "table": self.table, "priority": self.priority}

    async def __aenter__(self) -> Steering:
        await self.open()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()

    async def open(self) -> None:
        """Install the rule: marked packets look up our table first."""
        if self._ipr is not None:
            return
        self._ipr = AsyncIPRoute()
        # wireguard-go takes every IPv4 route message numbered 1..65536 for the answer to
        # one of its own queries and does not re-resolve on it; pyroute2 numbers requests
        # 255..65535, so by default our route changes would go unheard (ip(8) numbers
        # them by the clock, which is why it works there)
        self._ipr.addr_pool = AddrPool(minaddr=_FIRST_SEQ, maxaddr=_LAST_SEQ)
        try:
            await self._ipr.rule("add", **self._rule())
        except NetlinkError as e:
            if e.code != errno.EEXIST:
                await self.close()
                raise SteeringError(f"cannot add the rule fwmark {self.fwmark:#x} → table "
                                    f"{self.table} at priority {self.priority}: "
                                    f"{_strerror(e)}") from None
            # the very same rule: a run killed before its close left it; take it over
        self._rule_installed = True

    async def steer(self, wan_name: str, destination: str) -> None:
        """Route `destination` (the centre's endpoint, or a prefix) out of WAN `wan_name`.

        One ``route replace``: the route is swapped atomically, never missing. Then call
        the tunnel's ``rebind()``, or packets still arriving over a working old WAN pin
        the tunnel there (see the module's doc). When the old WAN is dead, this alone
        moves the tunnel, through wireguard-go's route listener.
        """
        wan = self.wans.get(wan_name)
        if wan is None:
            raise ValueError(f"no WAN named {wan_name!r} (known: {', '.join(self.wans)})")
        net = _destination(destination)
        if self._ipr is None:
            raise SteeringError("steering is not open: open() installs its rule first")
        found = await self._ipr.link_lookup(ifname=wan.interface)
        if not found:
            raise SteeringError(f"WAN {wan.name!r}: interface {wan.interface!r} does not "
                                "exist")
        route: dict[str, object] = {
            "dst": str(net.network_address), "dst_len": net.prefixlen, "table": self.table,
            "oif": found[0], "prefsrc": wan.source}
        if wan.gateway is not None:
            route["gateway"] = wan.gateway
        try:
            await self._ipr.route("replace", **route)
        except NetlinkError as e:
            via = f" via {wan.gateway}" if wan.gateway else ""
            raise SteeringError(f"cannot steer {net} over {wan.name!r} "
                                f"({wan.interface}{via}, from {wan.source}): "
                                f"{_strerror(e)}") from None
        self.routes[net] = wan.name
        self._active = wan.name

    async def close(self) -> None:
        """Remove our routes and our rule, and nothing else. Idempotent; never raises."""
        ipr, self._ipr = self._ipr, None
        if ipr is None:
            return
        try:
            for net in self.routes:
                # gone already is fine: the interface went down with its routes
                with contextlib.suppress(NetlinkError):
                    await ipr.route("del", dst=str(net.network_address),
                                    dst_len=net.prefixlen, table=self.table)
            if self._rule_installed:
                with contextlib.suppress(NetlinkError):
                    await ipr.rule("del", **self._rule())
        except OSError:
            pass  # the netlink socket itself failed (its namespace went): nothing to undo
        finally:
            ipr.close()
            self.routes.clear()
            self._rule_installed = False
            self._active = None


def _strerror(e: NetlinkError) -> str:
    return os.strerror(e.code) if e.code else str(e)
