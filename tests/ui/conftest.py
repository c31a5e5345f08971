"""Fixtures for the dashboard: a broker that can be stopped and started again, a fake
vehicle publishing on it, and the app wired to both."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from edge.bus.client import BusClient
from edge.bus.endpoints import Endpoints
from edge.config import VehicleConfig, parse_config
from tests.support import BrokerHandle
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
