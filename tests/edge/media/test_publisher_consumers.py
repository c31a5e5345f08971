"""The publisher counts its consumers (XPUB_VERBOSER), over real ipc sockets.

The camera service lets a GB/T 28181 stream go while this count is 0, and such a stream
publishes nothing meanwhile: so the count must move without a unit being published
(:meth:`MediaPublisher.watch` on the event loop), as well as on the publishing path.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import pytest
import zmq

from edge.media.publisher import MediaPublisher
from edge.media.subscriber import MediaSubscriber
from tests.support import eventually

pytestmark = pytest.mark.timeout(60)

TB = Fraction(1, 90_000)


@pytest.fixture
def zctx() -> Iterator[zmq.Context[zmq.Socket[bytes]]]:
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    yield ctx
    ctx.destroy(linger=0)


def unit(pub: MediaPublisher, index: int, keyframe: bool) -> None:
    pub.publish(index.to_bytes(4, "big"), keyframe=keyframe, pts=index * 3000,
                dts=index * 3000, time_base=TB, codec="h264", received_ns=time.time_ns())


async def counted(pub: MediaPublisher, consumers: int) -> None:
    await eventually(lambda: pub.consumers == consumers,
                     what=f"{consumers} consumer(s) counted")


async def test_consumers_are_counted_while_nothing_is_published(
        zctx: zmq.Context[zmq.Socket[bytes]], runtime_dir: Path) -> None:
    told: list[int] = []
    pub = MediaPublisher(zctx, f"ipc://{runtime_dir}/media-dome-main.sock",
                         on_consumers=lambda: told.append(pub.consumers))
    watch = asyncio.create_task(pub.watch())
    subs: list[MediaSubscriber] = []
    try:
        for expected in (1, 2):
            subs.append(MediaSubscriber(zctx, pub.endpoint))
            await counted(pub, expected)
        # A consumer that closes its socket unsubscribes: the count goes down with it.
        for expected in (1, 0):
            subs.pop().close()
            await counted(pub, expected)
        assert told == [1, 2, 1, 0]
        assert (pub.stats.subscriptions, pub.stats.unsubscriptions) == (2, 2)
        assert pub.stats.published == 0
    finally:
        for sub in subs:
            sub.close()
        watch.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watch
        pub.close()


async def test_consumers_are_counted_on_the_publishing_path(
        zctx: zmq.Context[zmq.Socket[bytes]], runtime_dir: Path) -> None:
    """Without `watch` (an RTSP stream): each publish serves what is queued."""
    pub = MediaPublisher(zctx, f"ipc://{runtime_dir}/media-gate-main.sock")
    sub = MediaSubscriber(zctx, pub.endpoint)
    index = 0

    def publish_one() -> bool:
        nonlocal index
        unit(pub, index, keyframe=index % 10 == 0)
        index += 1
        return pub.consumers == 1

    try:
        await eventually(publish_one, what="the consumer counted by publish()")
        sub.close()
        await eventually(lambda: not publish_one(), what="the consumer's leaving counted")
        assert pub.consumers == 0
    finally:
        sub.close()
        pub.close()


async def test_a_reset_gop_is_not_replayed_to_the_next_consumer(
        zctx: zmq.Context[zmq.Socket[bytes]], runtime_dir: Path) -> None:
    """What the camera service does when a stream is let go: the next consumer starts at the
    next session's keyframe, not at a picture from before the release."""
    pub = MediaPublisher(zctx, f"ipc://{runtime_dir}/media-dome-main.sock")
    watch = asyncio.create_task(pub.watch())
    sub: MediaSubscriber | None = None
    try:
        for i in range(3):
            unit(pub, i, keyframe=i == 0)
        pub.reset()
        sub = MediaSubscriber(zctx, pub.endpoint)
        await counted(pub, 1)
        unit(pub, 3, keyframe=True)
        async with asyncio.timeout(10):
            first = await sub.recv()
        assert (int.from_bytes(first.data, "big"), first.keyframe) == (3, True)
        assert pub.stats.replayed == 0
    finally:
        if sub is not None:
            sub.close()
        watch.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watch
        pub.close()
