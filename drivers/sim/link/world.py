"""The emulated network: a centre namespace and a vehicle namespace, one TUN pair per WAN.

::

    vehicle ns                       this process                         centre ns
    geo  198.18.0.2/24 ──TUN fd──► Path up ─────────► ──TUN fd──► geo  198.18.0.1/24
                       ◄────────── Path down ◄─────────                lo  198.19.0.1/32
    lte  198.18.1.2/24 ...                                             lte 198.18.1.1/24

Addresses come only from the RFC 2544 benchmarking range 198.18.0.0/15, which no real
network uses: WAN *i* is 198.18.*i*.0/24 (centre .1, vehicle .2), and the centre also
has a service address, 198.19.0.1, reachable from the vehicle over any WAN. In the
vehicle, the main table sends the service range over the first WAN, and each WAN has
its own table (100 + *i*) chosen by a rule on its source address, so a socket bound to
a WAN's address leaves by that WAN whatever the main table says (link probes do this).

The TUNs are made in this process's namespace (TUNSETIFF on /dev/net/tun), under
unique temporary names, then moved into their namespaces and renamed after the WAN.
Their fds stay here: the relay (:mod:`drivers.sim.link.emulator`) reads and writes
them. Namespaces, links, addresses, routes and rules are made with pyroute2.
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
import threading
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from types import FrameType, TracebackType
from typing import Any

from pyroute2 import AsyncIPRoute

from drivers.sim.link import netns
from drivers.sim.link.profile import LinkProfile
from drivers.sim.link.tun import open_tun, tun_available

SERVICE_ADDRESS = "198.19.0.1"
SERVICE_NET = ("198.19.0.0", 24)
MAX_WANS = 16
_WAN_NAME = re.compile(r"^[a-z][a-z0-9-]{0,14}$")
_TABLE_BASE = 100
_RULE_PRIORITY_BASE = 1000
_CAP_NET_ADMIN = 12
_CAP_SYS_ADMIN = 21  # mounting /run/netns/NAME


@dataclass(frozen=True, slots=True)
class Wan:
    """One emulated WAN as the namespaces see it."""

    name: str  # also the interface name on both sides
    profile: LinkProfile
    index: int
    vehicle_address: str
    centre_address: str
    prefixlen: int = 24

    @property
    def table(self) -> int:
        return _TABLE_BASE + self.index


@asynccontextmanager
async def _rtnl(ns: str | None) -> AsyncIterator[AsyncIPRoute]:
    """pyroute2 on a netlink socket in `ns` (None: here), closed after."""
    sock = netns.netlink_in(ns) if ns is not None else None
    try:
        async with AsyncIPRoute(use_socket=sock) as ipr:
            yield ipr
    finally:
        if sock is not None:
            sock.close()  # pyroute2 leaves a socket it was given open


def check_wan_name(name: str) -> str:
    if not _WAN_NAME.match(name) or name == "lo":
        raise ValueError(f"link name {name!r}: expected 1-15 of a-z, 0-9 and '-', "
                         "starting with a letter")
    return name


def _effective_caps() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("CapEff:"):
                return int(line.split()[1], 16)
    return 0


def preflight() -> str | None:
    """None if this process can build a world, else one sentence saying why not."""
    caps = _effective_caps()
    if not (caps >> _CAP_NET_ADMIN) & 1 or not (caps >> _CAP_SYS_ADMIN) & 1:
        return ("needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN) to create network namespaces "
                "and TUN devices; run it with sudo")
    return tun_available()


class World:
    """Namespaces and TUN pairs, built by ``async with World(...)``, always taken down.

    Taken down on leaving the block, on an error while building, and on SIGTERM when
    the process has no SIGTERM handler of its own (it becomes ``SystemExit``, which
    unwinds through the block). A run killed with SIGKILL leaves its namespaces; the
    next World removes those of dead owners (:func:`netns.sweep_stale`).
    """

    def __init__(self, wans: Sequence[tuple[str, LinkProfile]]) -> None:
        if not 1 <= len(wans) <= MAX_WANS:
            raise ValueError(f"a world has 1..{MAX_WANS} links, got {len(wans)}")
        names = [check_wan_name(name) for name, _ in wans]
        if len(set(names)) != len(names):
            raise ValueError(f"link names must differ, got {', '.join(names)}")
        suffix = f"{os.getpid()}-{secrets.token_hex(2)}"
        self.vehicle = f"edge-vehicle-{suffix}"
        self.centre = f"edge-centre-{suffix}"
        self.service_address = SERVICE_ADDRESS
        self.wans = [Wan(name, profile, i, f"198.18.{i}.2", f"198.18.{i}.1")
                     for i, (name, profile) in enumerate(wans)]
        #: per WAN: (vehicle side fd, centre side fd)
        self.fds: dict[str, tuple[int, int]] = {}
        self._made: list[str] = []
        self._children: list[subprocess.Popen[bytes]] = []
        self._old_sigterm: Any = None
        self._closed = False
        # a library that forks from inside our stack (pyroute2's helpers do) makes a copy
        # of this object: the copy must never run our cleanup, or it takes down ours
        self._owner = os.getpid()

    def wan(self, name: str) -> Wan:
        for w in self.wans:
            if w.name == name:
                return w
        raise KeyError(f"no link named {name!r}")

    # -- building ------------------------------------------------------------------------
    async def __aenter__(self) -> World:
        self._catch_sigterm()
        try:
            await self._build()
        except BaseException:
            self.close()
            raise
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    async def _build(self) -> None:
        netns.sweep_stale()
        for name in (self.vehicle, self.centre):
            netns.create(name)
            self._made.append(name)
        for wan in self.wans:
            await self._add_wan(wan)
        for ns in (self.vehicle, self.centre):
            async with _rtnl(ns) as ipr:
                (lo,) = await ipr.link_lookup(ifname="lo")
                await ipr.link("set", index=lo, state="up")
                if ns == self.centre:
                    await ipr.addr("add", index=lo, address=SERVICE_ADDRESS, prefixlen=32)
        await self._route_vehicle()

    async def _add_wan(self, wan: Wan) -> None:
        temp = f"edl{secrets.token_hex(5)}"  # unique in this namespace while it lives here
        ends = ((self.vehicle, wan.vehicle_address), (self.centre, wan.centre_address))
        fds: list[int] = []
        try:
            for n, (ns, address) in enumerate(ends):
                fds.append(open_tun(f"{temp}{n}"))
                nsfd = os.open(netns.path_of(ns), os.O_RDONLY | os.O_CLOEXEC)
                try:
                    async with _rtnl(None) as ipr:
                        (index,) = await ipr.link_lookup(ifname=f"{temp}{n}")
                        await ipr.link("set", index=index, net_ns_fd=nsfd)
                finally:
                    os.close(nsfd)
                async with _rtnl(ns) as ipr:
                    (index,) = await ipr.link_lookup(ifname=f"{temp}{n}")
                    await ipr.link("set", index=index, ifname=wan.name)
                    # no IPv6 link-local chatter (router solicitations, MLD) through the
                    # emulator: it would show in the counters as traffic nobody sent
                    netns.write_sysctl(ns, f"net/ipv6/conf/{wan.name}/disable_ipv6", "1")
                    await ipr.addr("add", index=index, address=address,
                                   prefixlen=wan.prefixlen)
                    await ipr.link("set", index=index, state="up")
        except BaseException:
            for fd in fds:
                os.close(fd)
            raise
        self.fds[wan.name] = (fds[0], fds[1])

    async def _route_vehicle(self) -> None:
        net, plen = SERVICE_NET
        async with _rtnl(self.vehicle) as ipr:
            for wan in self.wans:
                (index,) = await ipr.link_lookup(ifname=wan.name)
                if wan.index == 0:
                    await ipr.route("add", dst=net, dst_len=plen, oif=index,
                                    prefsrc=wan.vehicle_address)
                await ipr.route("add", dst=net, dst_len=plen, oif=index, table=wan.table,
                                prefsrc=wan.vehicle_address)
                await ipr.rule("add", src=wan.vehicle_address, src_len=32, table=wan.table,
                               priority=_RULE_PRIORITY_BASE + wan.index)

    # -- using ---------------------------------------------------------------------------
    def run_in(self, ns: str, argv: Sequence[str], **popen: Any) -> subprocess.Popen[bytes]:
        """Start `argv` inside namespace `ns` (:attr:`vehicle` or :attr:`centre`).

        The process is stopped (SIGTERM, then SIGKILL after 3 s) when the world closes.
        """
        if ns not in (self.vehicle, self.centre):
            raise ValueError(f"{ns!r} is not a namespace of this world")
        proc: subprocess.Popen[bytes] = subprocess.Popen(
            [*netns.exec_prefix(ns), *argv], **popen)
        self._children.append(proc)
        return proc

    def command_in(self, ns: str) -> str:
        """What an operator types to run a command inside `ns`."""
        return f"ip netns exec {ns} COMMAND"

    # -- taking down ---------------------------------------------------------------------
    def close(self) -> None:
        """Stop children, close the TUNs (which removes them), remove the namespaces.

        Idempotent, and never raises: it runs on the way out of failures.
        """
        if self._closed or os.getpid() != self._owner:
            return
        self._closed = True
        for proc in self._children:
            if proc.poll() is None:
                proc.terminate()
        for proc in self._children:
            try:
                proc.wait(3)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for vehicle_fd, centre_fd in self.fds.values():
            for fd in (vehicle_fd, centre_fd):
                try:
                    os.close(fd)
                except OSError:
                    pass
        self.fds.clear()
        for name in self._made:
            try:
                netns.remove(name)
            except OSError:
                pass
        self._made.clear()
        self._restore_sigterm()

    def _catch_sigterm(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
            return  # the program handles SIGTERM itself (the CLI's event loop does)

        owner = self._owner

        def on_sigterm(signum: int, frame: FrameType | None) -> None:
            if os.getpid() != owner:
                os._exit(128 + signum)  # a forked helper, told to stop: just stop
            raise SystemExit(128 + signum)

        self._old_sigterm = signal.signal(signal.SIGTERM, on_sigterm)

    def _restore_sigterm(self) -> None:
        if self._old_sigterm is not None:
            signal.signal(signal.SIGTERM, self._old_sigterm)
            self._old_sigterm = None
