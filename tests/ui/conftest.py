"""Fixtures for the dashboard: a broker that can be stopped and started again, a fake
vehicle publishing on it, and the app wired to both."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from rich.text import Text

from edge.bus.broker import Broker
from edge.bus.client import BusClient
from edge.bus.endpoints import Endpoints
from edge.config import VehicleConfig, parse_config
from tests.ui.feed import FakeVehicle, FeedRates
from ui.app import DashboardApp

TEST_CONFIG: dict[str, Any] = {
    "vehicle": "test",
    "position": {"lat": 30.5928, "lon": 114.3055},
    "cameras": [
        {"id": "north-gate", "name": "North gate", "main": "rtsp://127.0.0.1:1/n"},
        {"id": "east-yard", "name": "East yard", "main": "rtsp://127.0.0.1:1/e"},
    ],
    "drones": [{"id": "alpha", "name": "Drone Alpha", "connection": "tcp:127.0.0.1:5760"}],
    "links": [{"id": "sat", "name": "Satellite", "kind": "satellite"}],
}


class BrokerHandle:
    """A real broker in a thread; `stop()` and `start()` again on the same endpoints."""

    def __init__(self, endpoints: Endpoints) -> None:
        self.endpoints = endpoints
        self.broker: Broker | None = None
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        b = Broker(self.endpoints)
        b.bind()
        t = threading.Thread(target=b.run, daemon=True, name="test-broker")
        t.start()
        self.broker, self.thread = b, t

    def stop(self) -> None:
        if self.broker is None or self.thread is None:
            return
        self.broker.stop()
        self.thread.join(5)
        assert not self.thread.is_alive(), "broker did not stop"
        self.broker = self.thread = None


@pytest.fixture
def config() -> VehicleConfig:
    return parse_config(TEST_CONFIG)


@pytest.fixture
def fast_endpoints(endpoints: Endpoints) -> Endpoints:
    # Short request timeout: the timeout test waits for it.
    return dataclasses.replace(endpoints, request_timeout_s=0.6)


@pytest.fixture
def restartable_broker(fast_endpoints: Endpoints) -> Iterator[BrokerHandle]:
    handle = BrokerHandle(fast_endpoints)
    handle.start()
    yield handle
    handle.stop()


@pytest.fixture
async def publisher(fast_endpoints: Endpoints,
                    restartable_broker: BrokerHandle) -> AsyncIterator[BusClient]:
    client = BusClient(fast_endpoints, source="test-vehicle")
    yield client
    await client.close()


@pytest.fixture
async def vehicle(publisher: BusClient) -> AsyncIterator[FakeVehicle]:
    """Heartbeats only, 5 a second; tests publish the rest themselves when they need it."""
    feed = FakeVehicle(publisher, cameras=[], drones=[], rates=FeedRates(heartbeat_s=0.2))
    task = asyncio.create_task(feed.run(), name="fake-vehicle")
    yield feed
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


@pytest.fixture
def make_app(config: VehicleConfig, fast_endpoints: Endpoints,
             vehicle: FakeVehicle) -> Callable[..., DashboardApp]:
    def make(**options: Any) -> DashboardApp:
        return DashboardApp(config, endpoints=fast_endpoints, **options)
    return make


async def until(pilot: Any, predicate: Callable[[], object], what: str,
                timeout: float = 5.0) -> None:
    """Let the app run until `predicate()` holds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await pilot.pause(0.05)


def plain(renderable: object) -> str:
    if isinstance(renderable, Text):
        return renderable.plain
    return str(renderable)
