"""The dashboard's bus liveness: only a live broker heartbeat counts, never a replayed one.

A real broker keeps the last `svc/bus/health` in its last-value cache and
replays it to every new subscription, long after whoever published it has
stopped. The bridge must not take that for a sign of life: the test runs
`BusBridge` (without Textual) against the real broker and looks only at the
bus state it shows, not at how it tells a replay from a new message.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest

from edge.bus import topics
from edge.bus.broker import Broker
from edge.bus.client import BusClient
from edge.bus.endpoints import Endpoints
from edge.bus.messages import ServiceHealth
from ui.bridge import BusBridge
from ui.state import DashboardState

pytestmark = pytest.mark.timeout(60)

TIMEOUT_S = 1.0  # the bridge's heartbeat timeout (3 s in the dashboard), small for the test
RECONNECT_S = 0.5  # how often a bridge that lost the bus makes a fresh client (2 s)



@asynccontextmanager
async def heartbeats(endpoints: Endpoints, every: float = 0.1) -> AsyncIterator[BusClient]:
    """The broker's heartbeat as the runner publishes it, until the block ends."""
    client = BusClient(endpoints, source="bus")

    async def beat() -> None:
        while True:
            client.publish(topics.svc_health("bus"), ServiceHealth(service="bus", pid=os.getpid()))
            await asyncio.sleep(every)

    task = asyncio.create_task(beat(), name="test-heartbeat")
    try:
        yield client
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await client.close()


class Watched:
    """A bridge, and every bus state it showed since a moment (sampled every 20 ms)."""

    def __init__(self, bridge: BusBridge) -> None:
        self.bridge = bridge
        self.shown: list[bool | None] = []

    @property
    def connected(self) -> bool | None:
        return self.bridge.state.bus.connected

    def since(self, mark: int) -> set[bool | None]:
        return set(self.shown[mark:])

    async def sample(self) -> None:
        while True:
            self.shown.append(self.connected)
            await asyncio.sleep(0.02)


@asynccontextmanager
async def bridge(endpoints: Endpoints) -> AsyncIterator[Watched]:
    b = BusBridge(endpoints, DashboardState(), source="test-dashboard",
                  heartbeat_timeout=TIMEOUT_S, reconnect_every=RECONNECT_S)
    watched = Watched(b)
    tasks = [asyncio.create_task(watched.sample(), name="test-bridge-sampler"),
             asyncio.create_task(b.run(), name="test-bridge")]
    try:
        yield watched
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def until(predicate: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.02)


async def dead_heartbeat(endpoints: Endpoints, broker: Broker) -> None:
    """A heartbeat publisher that came and went, its last heartbeat left in the cache
    and older than the heartbeat timeout: a dead bus's, not one from a moment ago."""
    async with heartbeats(endpoints):
        await until(lambda: topics.svc_health("bus").encode() in broker.cache,
                    "the broker to cache a heartbeat")
    stopped = time.monotonic()
    # A wait on the clock is the condition itself here: the heartbeat's age.
    await asyncio.sleep(max(0.0, stopped + TIMEOUT_S + 0.5 - time.monotonic()))



async def test_a_cached_heartbeat_does_not_bring_a_new_dashboard_up(
        endpoints: Endpoints, broker: Broker) -> None:
    await dead_heartbeat(endpoints, broker)
    async with bridge(endpoints) as w:
        # The replay does arrive (the broker's health shows among the services)...
        await until(lambda: "bus" in w.bridge.state.services, "the cached heartbeat")
        # ...but from the start the bus is not shown alive: not at once, and not when
        # a fresh client (made while the bus is gone) gets the same cached heartbeat.
        await until(lambda: w.bridge.state.bus.reconnects >= 3, "fresh clients",
                    timeout=3 * (TIMEOUT_S + RECONNECT_S) + 5)
        assert True not in w.since(0), f"a replayed heartbeat showed the bus alive: {w.shown}"
        assert w.connected is False

        # A live heartbeat does bring it up: the bridge was able to show it all along.
        async with heartbeats(endpoints):
            await until(lambda: w.connected is True, "the bus shown back")



async def test_replays_do_not_keep_a_dead_bus_alive(
        endpoints: Endpoints, broker: Broker) -> None:
    async with bridge(endpoints) as w:
        async with heartbeats(endpoints):
            await until(lambda: w.connected is True, "the bus shown there")
        # The heartbeats stopped; other clients keep subscribing, and each time the
        # broker replays its cached heartbeat to every subscriber of svc/, the bridge too.
        others = BusClient(endpoints, source="late-joiners")

        async def join() -> None:
            while True:
                others.subscribe(topics.SVC)
                await asyncio.sleep(0.1)

        joining = asyncio.create_task(join(), name="late-joiners")
        try:
            await until(lambda: w.connected is False, "the bus shown gone",
                        timeout=TIMEOUT_S + 5)
            gone, reconnects = len(w.shown), w.bridge.state.bus.reconnects
            # Gone, and it stays gone through fresh clients of its own as well.
            await until(lambda: w.bridge.state.bus.reconnects >= reconnects + 3,
                        "fresh clients", timeout=3 * (TIMEOUT_S + RECONNECT_S) + 5)
            assert w.since(gone) == {False}, "a replayed heartbeat showed the bus alive"
        finally:
            joining.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await joining
            await others.close()
