"""A restarted broker relearns the services' names from their repeated registrations."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from edge.bus.client import BusClient, RequestError
from edge.bus.endpoints import Endpoints
from edge.bus.envelope import Envelope
from edge.bus.messages import Message, Ping, Reply
from tests.support import BrokerHandle

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def restartable(endpoints: Endpoints) -> Iterator[BrokerHandle]:
    handle = BrokerHandle(endpoints)
    handle.start()
    yield handle
    handle.stop()


async def first_reply(client: BusClient, service: str, within: float) -> Envelope:
    """Ask `service` until it answers (each ask may fail: unknown name, no reply)."""
    deadline = time.monotonic() + within
    while True:
        try:
            return await client.request(service, Ping(), timeout=0.5)
        except RequestError as e:
            if time.monotonic() > deadline:
                raise AssertionError(f"{service} unreachable for {within:g} s: {e}") from None
            await asyncio.sleep(0.1)


async def test_names_are_relearned_after_a_broker_restart(
        endpoints: Endpoints, restartable: BrokerHandle) -> None:
    server = BusClient(endpoints, source="drone@alpha")
    caller = BusClient(endpoints, source="dashboard")

    async def answer(env: Envelope) -> Message:
        return Reply(status="accepted", detail="pong")

    try:
        server.serve("drone@alpha", answer)
        env = await first_reply(caller, "drone@alpha", within=10)
        assert isinstance(env.message, Reply) and env.message.detail == "pong"

        restartable.stop()
        new = restartable.start()
        # The architecture promises "within a second"; 10 s leaves room for ZeroMQ's
        # reconnect on a loaded machine and still fails if registrations stopped.
        env = await first_reply(caller, "drone@alpha", within=10)
        assert isinstance(env.message, Reply) and env.message.detail == "pong"
        assert b"drone@alpha" in new.services
    finally:
        await caller.close()
        await server.close()
