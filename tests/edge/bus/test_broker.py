"""The broker's cache thread and busy event topics, over real ipc sockets.

A busy event topic is kept from the cache thread by libzmq (the capture socket
inverts its matching), so Python no longer sees it; state always reaches it.
What the cache thread saw is `broker.stats.forwarded`; a round below ends with a
state message whose arrival in the cache says the thread has read everything
sent before it. One raw PUB socket sends everything, in one ordered stream (a
BusClient would send its state again after connecting and blur the counts).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator

import pytest
import zmq

from edge.bus import broker as broker_module
from edge.bus import envelope
from edge.bus.broker import Broker
from edge.bus.client import BusClient
from edge.bus.endpoints import Endpoints
from edge.bus.messages import Alert, CameraStatus, Message
from tests.support import eventually, running_broker

pytestmark = pytest.mark.timeout(60)

BUSY = "busy/x"
MARK = "busy/mark/status"


class Feed:
    """A raw publisher: every message in one ordered stream, nothing sent twice."""

    def __init__(self, endpoints: Endpoints) -> None:
        self.sock: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.PUB)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.SNDHWM, 0)
        self.sock.connect(endpoints.pub)
        self._seq: dict[str, int] = {}
        self._marks = itertools.count(1)

    def send(self, topic: str, message: Message) -> None:
        seq = self._seq[topic] = self._seq.get(topic, 0) + 1
        self.sock.send_multipart(envelope.encode(topic, message, "feed", seq))

    async def round(self, broker: Broker, events: int, *also: tuple[str, Message]) -> int:
        """Send `events` on BUSY, then `also`, then a mark: how many the cache thread saw."""
        before = broker.stats.forwarded
        for _ in range(events):
            self.send(BUSY, Alert(text="busy"))
        for topic, message in also:
            self.send(topic, message)
        mark = str(next(self._marks))
        self.send(MARK, CameraStatus(camera_id=mark))
        await eventually(lambda: _cached_mark(broker) == mark, within=20,
                         what=f"mark {mark} in the broker's cache")
        return broker.stats.forwarded - before

    async def join(self, broker: Broker) -> None:
        """Until the broker hears this socket (the slow joiner drops what comes before)."""
        mark = "join"
        async def heard() -> None:
            while _cached_mark(broker) != mark:
                self.send(MARK, CameraStatus(camera_id=mark))
                await asyncio.sleep(0.05)
        await asyncio.wait_for(heard(), 10)
        await self.round(broker, 0)  # the joining marks still on their way are read too

    def close(self) -> None:
        self.sock.close(0)


def _cached_mark(broker: Broker) -> str | None:
    frames = broker.cache.get(MARK.encode())
    if frames is None:
        return None
    message = envelope.decode(frames).message
    assert isinstance(message, CameraStatus)
    return message.camera_id


@pytest.fixture
def feed(endpoints: Endpoints) -> Iterator[Feed]:
    f = Feed(endpoints)
    yield f
    f.close()


async def until_bypassed(feed: Feed, broker: Broker) -> None:
    """Rounds of events until one passed the cache thread by entirely (its mark alone seen)."""
    async def rounds() -> None:
        while await feed.round(broker, 50) != 1:
            pass
    await asyncio.wait_for(rounds(), 30)


async def test_a_busy_event_topic_passes_the_cache_thread_by(
        endpoints: Endpoints, feed: Feed, monkeypatch: pytest.MonkeyPatch) -> None:
    # One window for the whole test on any machine: nothing is lifted half-way.
    monkeypatch.setattr(broker_module, "HOT_WINDOW_S", 60.0)
    with running_broker(endpoints) as broker:
        await feed.join(broker)
        # Quiet, an event topic is read like any other: every message and the mark.
        assert await feed.round(broker, 20) == 21
        await until_bypassed(feed, broker)
        assert broker.stats.bypassed == 1
        # Subscribers still get every message of it, in order, none missed.
        viewer = BusClient(endpoints, source="viewer")
        sub = viewer.subscribe(BUSY)
        try:
            async def first() -> None:
                while True:
                    feed.send(BUSY, Alert(text="hello"))
                    try:
                        await asyncio.wait_for(sub.recv(), 0.2)
                        return
                    except TimeoutError:
                        continue
            await asyncio.wait_for(first(), 10)
            assert await feed.round(broker, 500) == 1
            got = 0
            async def all_of_them() -> None:
                nonlocal got
                while got < 500:
                    env = await sub.recv()
                    if isinstance(env.message, Alert) and env.message.text == "busy":
                        assert env.gap == 0
                        got += 1
            await asyncio.wait_for(all_of_them(), 10)
        finally:
            await viewer.close()
        # State is never kept from the cache: the marks above all arrived.


async def test_no_exclusion_hides_a_cached_state_topic(
        endpoints: Endpoints, feed: Feed, monkeypatch: pytest.MonkeyPatch) -> None:
    """An exclusion is a prefix: `busy/x` would hide `busy/x/status`, which the cache holds."""
    monkeypatch.setattr(broker_module, "HOT_WINDOW_S", 60.0)
    state = f"{BUSY}/status"
    with running_broker(endpoints) as broker:
        await feed.join(broker)
        assert await feed.round(broker, 0, (state, CameraStatus(camera_id="x", state="live"))) == 2
        for _ in range(2 * broker_module.HOT_EVENTS // 50):
            assert await feed.round(broker, 50) == 51
        assert broker.stats.bypassed == 0
        assert await feed.round(broker, 0, (state, CameraStatus(camera_id="x", state="down"))) == 2

        def cached_state() -> str:
            message = envelope.decode(broker.cache[state.encode()]).message
            assert isinstance(message, CameraStatus)
            return message.state
        assert cached_state() == "down"


async def test_exclusions_are_lifted_when_the_window_ends(
        endpoints: Endpoints, feed: Feed, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(broker_module, "HOT_WINDOW_S", 0.5)
    with running_broker(endpoints) as broker:
        await feed.join(broker)
        await until_bypassed(feed, broker)
        # Quiet again: once its window is over the topic is read again (event and mark).
        async def read_again() -> None:
            while await feed.round(broker, 1) != 2:
                await asyncio.sleep(0.05)
        await asyncio.wait_for(read_again(), 20)
