"""Fixtures for the MAVLink driver tests: a simulated drone and a link to it,
on real sockets on 127.0.0.1 with OS-chosen ports, always torn down."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack
from typing import Any

import pytest
import pytest_asyncio

from drivers.mavlink.dialect import mavlink, mavutil
from drivers.mavlink.events import LinkEvent
from drivers.mavlink.link import DroneLink
from drivers.mavlink.router import Endpoint, MavRouter
from drivers.sim.drone.server import SimDrone
from drivers.sim.drone.vehicle import SimConfig

HOME = (31.2304, 121.4737)
#: a sim that flies a small, quick pattern so motion tests finish fast
QUICK = SimConfig(
    cruise_mps=15.0,
    circle_radius_m=20.0,
    start_alt_m=12.0,
    descent_mps=3.0,
    land_final_mps=3.0,
    rtl_alt_m=10.0,
)


async def wait_until(
    predicate: Callable[[], Any], within_s: float = 5.0, interval: float = 0.02
) -> Any:
    """Poll ``predicate`` until it is truthy; fail the test after ``within_s``."""
    deadline = time.monotonic() + within_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within_s} s")
        await asyncio.sleep(interval)


class EventLog:
    """Collects a link's events for assertions."""

    def __init__(self) -> None:
        self.events: list[LinkEvent] = []

    def __call__(self, event: LinkEvent) -> None:
        self.events.append(event)

    def of(self, kind: type[LinkEvent]) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]


@pytest_asyncio.fixture
async def stack() -> AsyncIterator[AsyncExitStack]:
    async with AsyncExitStack() as s:
        yield s


SimFactory = Callable[..., Awaitable[SimDrone]]
RouterSetup = tuple[SimDrone, DroneLink, MavRouter]
LinkFactory = Callable[..., Awaitable[DroneLink]]


@pytest.fixture
def make_sim(stack: AsyncExitStack) -> SimFactory:
    async def make(connection: str = "tcp:127.0.0.1:0", **kwargs: Any) -> SimDrone:
        kwargs.setdefault("home", HOME)
        kwargs.setdefault("seed", 1)
        return await stack.enter_async_context(SimDrone(connection, **kwargs))

    return make


@pytest.fixture
def make_link(stack: AsyncExitStack) -> LinkFactory:
    async def make(connection: str, **kwargs: Any) -> DroneLink:
        kwargs.setdefault("command_timeout_s", 0.5)
        kwargs.setdefault("command_retries", 1)
        return await stack.enter_async_context(DroneLink(connection, **kwargs))

    return make


def tcp_of(sim: SimDrone) -> str:
    assert sim.address is not None
    return f"tcp:127.0.0.1:{sim.address[1]}"


async def flying_pair(
    make_sim: SimFactory, make_link: LinkFactory, **sim_kwargs: Any
) -> tuple[SimDrone, DroneLink]:
    """A flying sim and a link that has heard its HEARTBEAT."""
    sim = await make_sim(**sim_kwargs)
    link = await make_link(tcp_of(sim))
    await wait_until(lambda: link.vehicles.get(1) and link.vehicles[1].telemetry.mode)
    return sim, link


class MavKit:
    """Everything a test needs, as one fixture (test modules cannot import conftest)."""

    HOME = HOME
    QUICK = QUICK
    EventLog = EventLog
    wait_until = staticmethod(wait_until)
    tcp_of = staticmethod(tcp_of)

    def __init__(self, make_sim: SimFactory, make_link: LinkFactory) -> None:
        self.sim = make_sim
        self.link = make_link

    async def pair(self, **sim_kwargs: Any) -> tuple[SimDrone, DroneLink]:
        return await flying_pair(self.sim, self.link, **sim_kwargs)


@pytest.fixture
def mav(make_sim: SimFactory, make_link: LinkFactory) -> MavKit:
    return MavKit(make_sim, make_link)


class Gcs:
    """An independent ground station: a blocking pymavlink ``mavutil`` client,
    driven from worker threads so the event loop keeps running."""

    def __init__(self, url: str, *, key: bytes | None = None) -> None:
        self.conn: Any = mavutil().mavlink_connection(url, source_system=250, source_component=190)
        if key is not None:
            # the simulated vehicle here does not sign; accept its telemetry
            self.conn.setup_signing(
                key, sign_outgoing=True, allow_unsigned_callback=lambda mav, msg_id: True
            )

    async def recv(self, kind: str, wait_s: float, **fields: int) -> Any:
        def match() -> Any:
            cond = " and ".join(f"{kind}.{k}=={v}" for k, v in fields.items()) or None
            return self.conn.recv_match(type=kind, condition=cond, blocking=True, timeout=wait_s)

        return await asyncio.to_thread(match)

    def heartbeat(self) -> None:
        self.conn.mav.heartbeat_send(mavlink.MAV_TYPE_GCS, mavlink.MAV_AUTOPILOT_INVALID, 0, 0, 0)

    def command(self, command: int) -> None:
        self.conn.mav.command_long_send(1, 1, command, 0, 0, 0, 0, 0, 0, 0, 0)

    def close(self) -> None:
        self.conn.close()


@pytest.fixture
def gcs() -> Iterator[Callable[..., Gcs]]:
    """Factory for mavutil ground stations, all closed at teardown."""
    made: list[Gcs] = []

    def make(url: str, *, key: bytes | None = None) -> Gcs:
        made.append(Gcs(url, key=key))
        return made[-1]

    yield make
    for client in made:
        client.close()


@pytest.fixture
def make_router(
    stack: AsyncExitStack, mav: MavKit
) -> Callable[..., Awaitable[tuple[Any, Any, MavRouter]]]:
    """A flying sim, a link to it and a started router, all stopped at teardown."""

    async def make(endpoints: list[Endpoint], **kwargs: Any) -> RouterSetup:
        sim, link = await mav.pair()
        router = await stack.enter_async_context(MavRouter(link, endpoints, **kwargs))
        return sim, link, router

    return make
