"""The replay vehicle's own bus: a broker in a thread of this process, and its heartbeat.

A replay is a second vehicle (``edge replay``, its own runtime dir), so its bus is
a bus like the live one: a :class:`~edge.bus.broker.Broker` whose health
(``svc/bus/health``, 1 Hz, on the wall clock) says it is alive, which is what the
dashboard and ``edge bus tail`` judge any bus by. The recording vehicle's broker
health is history and is not republished (:data:`edge.replay.bus_player.NOT_REPLAYED`):
on this bus, the broker is this one.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from types import TracebackType

from edge.bus import topics
from edge.bus.broker import Broker
from edge.bus.client import BusClient
from edge.bus.endpoints import Endpoints
from edge.bus.messages import ServiceHealth

HEALTH_EVERY_S = 1.0
JOIN_S = 5.0


class ReplayBusError(Exception):
    """The replay bus could not be opened (its message names why)."""


class ReplayBus:
    """``async with ReplayBus(endpoints):`` a broker at `endpoints` with its heartbeat."""

    def __init__(self, endpoints: Endpoints) -> None:
        self.endpoints = endpoints
        self.broker = Broker(endpoints)
        self._thread: threading.Thread | None = None
        self._client: BusClient | None = None
        self._beat: asyncio.Task[None] | None = None
        self._started = time.monotonic()

    async def __aenter__(self) -> ReplayBus:
        try:
            self.broker.bind()
        except Exception as e:  # zmq.ZMQError: the runtime dir is ours, so this is rare
            raise ReplayBusError(f"cannot start the replay bus in "
                                 f"{self.endpoints.runtime_dir}: {e}") from None
        # The poll loop is synchronous by design (as `edge run bus` runs it).
        self._thread = threading.Thread(target=self.broker.run, name="replay-broker",
                                        daemon=True)
        self._thread.start()
        self._client = BusClient(self.endpoints, source=topics.BUS_SERVICE)
        self._beat = asyncio.create_task(self._heartbeat(), name="replay-bus-health")
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._beat is not None:
            self._beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._beat
        if self._client is not None:
            await self._client.close()
        self.broker.stop()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, JOIN_S)

    async def _heartbeat(self) -> None:
        assert self._client is not None
        topic = topics.svc_health(topics.BUS_SERVICE)
        while True:
            s = self.broker.stats
            self._client.publish(topic, ServiceHealth(
                service=topics.BUS_SERVICE, pid=os.getpid(), state="running",
                detail=f"replay bus: forwarded {s.forwarded}, {len(self.broker.cache)} state "
                       f"topics cached, {sum(s.malformed.values())} malformed",
                uptime_s=round(time.monotonic() - self._started, 1),
                published=self._client.stats.published + 1,
                received=self._client.stats.received,
                malformed=sum(self._client.stats.malformed.values())))
            await asyncio.sleep(HEALTH_EVERY_S)
