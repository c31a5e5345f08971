"""Helpers for tests that run the links service (or its libraries) in an emulated world.

Code that works on "the current network namespace" (probes, netlink, wireguard-go,
policy routing) runs on an event loop of its own, on a thread that has joined the
namespace (:class:`tests.support.namespace_loop.NamespaceLoop`); the test's own loop
keeps relaying the emulated WANs. A service is hosted on such a loop with
:func:`hosted_in`, by the real runner.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast

from drivers.sim.link import netns
from edge.bus.endpoints import Endpoints
from edge.config import VehicleConfig
from edge.runtime.service import Service
from tests.support import Hosted, eventually, hosted, standing_still
from tests.support.namespace_loop import NamespaceLoop

T = TypeVar("T")
S = TypeVar("S", bound=Service)
_SEQ = struct.Struct("!I")


async def call_on(ns: NamespaceLoop, fn: Callable[[], T], within: float = 30) -> T:
    """`fn()` called on `ns`'s thread (for what must be undone where it was done, such
    as a reader added to that loop)."""
    async def call() -> T:
        return fn()
    return await ns.run(call(), within)


async def until(check: Callable[[], Awaitable[T | None]], within: float, what: str) -> T:
    """:func:`tests.support.eventually` for a check that must be awaited."""
    deadline = time.monotonic() + within
    while not (value := await check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within:g} s waiting for {what}")
        await asyncio.sleep(0.05)
    return value


@asynccontextmanager
async def hosted_in(ns: NamespaceLoop, cls: type[S], name: str, config: VehicleConfig,
                    config_path: Path, endpoints: Endpoints, *, ready_within: float = 20.0
                    ) -> AsyncIterator[Hosted[S]]:
    """`cls` run by the real service runner on `ns`'s loop (so in its namespace), stopped
    as SIGTERM would stop it when the block ends. Read the service's plain attributes
    from the test; await its coroutines with ``ns.run``."""
    started: concurrent.futures.Future[Hosted[S]] = concurrent.futures.Future()
    stops: list[asyncio.Event] = []

    async def serve() -> None:
        stop = asyncio.Event()
        stops.append(stop)
        async with hosted(cls, name, config, config_path, endpoints,
                          ready_within=ready_within) as h:
            started.set_result(h)
            await stop.wait()

    done = asyncio.run_coroutine_threadsafe(serve(), ns.loop)
    waiting: set[asyncio.Future[Any]] = {asyncio.wrap_future(started),
                                         asyncio.wrap_future(done)}
    await asyncio.wait(waiting, timeout=ready_within + 10,
                       return_when=asyncio.FIRST_COMPLETED)
    if not started.done():
        if done.done():
            done.result()  # its error
        raise AssertionError(f"{name} did not get ready")
    try:
        yield started.result()
    finally:
        ns.loop.call_soon_threadsafe(stops[0].set)
        await asyncio.wait_for(asyncio.wrap_future(done), 15)


# -- traffic through the tunnel -----------------------------------------------------------


class Echo(asyncio.DatagramProtocol):
    """Sends every datagram back where it came from."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.transport.sendto(data, addr)


@dataclass(eq=False)
class Pinger(asyncio.DatagramProtocol):
    """Numbered UDP datagrams at `rate_hz` to an echo; which came back."""

    rate_hz: float = 50.0
    next_seq: int = 0
    replies: set[int] = field(default_factory=set)
    transport: asyncio.DatagramTransport | None = None
    task: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.replies.add(_SEQ.unpack(data[:_SEQ.size])[0])

    def error_received(self, exc: Exception) -> None:
        pass  # an ICMP error while the route moves: that echo counts as lost

    async def _send(self) -> None:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        while True:
            assert self.transport is not None
            self.transport.sendto(_SEQ.pack(self.next_seq))
            self.next_seq += 1
            await asyncio.sleep(max(0.0, t0 + self.next_seq / self.rate_hz - loop.time()))

    def start(self) -> None:
        self.task = asyncio.create_task(self._send())

    def replies_since(self, seq: int) -> int:
        return sum(1 for s in self.replies if s >= seq)

    def lost_since(self, seq: int) -> int:
        return sum(1 for s in range(seq, self.next_seq) if s not in self.replies)

    async def stop(self) -> int:
        """Stop sending, wait for what is in flight; the number of echoes never answered."""
        if self.task is not None:
            self.task.cancel()
        await eventually(standing_still(lambda: len(self.replies)), within=10,
                         what="the last echoes in flight", every=0.1)
        return self.next_seq - len(self.replies)


async def udp_in(ns: str, protocol: asyncio.DatagramProtocol, bind: tuple[str, int] | None,
                 connect: tuple[str, int] | None = None) -> asyncio.DatagramTransport:
    """A UDP endpoint on the caller's loop whose socket lives in namespace `ns`."""
    sock = netns.socket_in(ns)
    try:
        if bind:
            sock.bind(bind)
        if connect:
            sock.connect(connect)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
        lambda: protocol, sock=sock)
    return transport
