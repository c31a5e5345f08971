"""The media plane: publisher (GOP cache, per-subscriber queues) and subscriber (order, gaps,
keyframe resync), over real ipc sockets.

The payloads are synthetic: the media plane never looks inside an access unit, so
a counter in the data is all a test needs to check order.  Time is compressed
(hundreds of frames a second) so that a slow consumer overflows in a second.
"""

from __future__ import annotations

import asyncio
import struct
import time
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import msgpack
import pytest
import zmq

from edge.media.gop import GopCache, KeyframeGate
from edge.media.publisher import MediaPublisher
from edge.media.subscriber import MediaSubscriber
from edge.media.wire import MediaFrame, encode

pytestmark = pytest.mark.timeout(60)

TB = Fraction(1, 90_000)


@pytest.fixture
def zctx() -> Iterator[zmq.Context[zmq.Socket[bytes]]]:
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    yield ctx
    ctx.destroy(linger=0)


def endpoint(runtime_dir: Path, name: str = "cam") -> str:
    return f"ipc://{runtime_dir}/media-{name}-main.sock"


def publish(pub: MediaPublisher, index: int, gop: int, size: int = 64) -> None:
    """Frame `index` (0-based); every `gop`-th is a keyframe. The data carries the index."""
    data = struct.pack("!I", index) + bytes(size - 4)
    pub.publish(data, keyframe=index % gop == 0, pts=index * 3000, dts=index * 3000,
                time_base=TB, codec="h264", received_ns=time.time_ns())


def index_of(frame: MediaFrame) -> int:
    value: int = struct.unpack_from("!I", frame.data)[0]
    return value


async def subscribed(pub: MediaPublisher, sub: MediaSubscriber) -> None:
    """Wait until the publisher's socket has the subscription queued (PUB/SUB slow joiner)."""
    async with asyncio.timeout(5):
        while not pub.sock.poll(0, zmq.POLLIN):
            await asyncio.sleep(0.01)


async def take_subscriptions(pub: MediaPublisher, count: int) -> None:
    """Wait until `count` subscriptions have reached the publisher, taking them off its socket.

    Once XPUB hands over a subscription message the subscriber is in its list, so what is
    published next reaches it. Taken here, the publisher does not count them, nor replay its
    GOP to them: only for a test that starts with an empty GOP and does not count.
    """
    taken = 0
    async with asyncio.timeout(10):
        while taken < count:
            if pub.sock.poll(0, zmq.POLLIN):
                taken += pub.sock.recv()[:1] == b"\x01"
            else:
                await asyncio.sleep(0.01)


def test_gop_cache_holds_from_the_last_keyframe_within_its_bound() -> None:
    gop: GopCache[int] = GopCache(limit=4)
    for i in range(3):
        gop.add(i, keyframe=False)  # before any keyframe: nothing decodable to keep
    assert list(gop) == []
    for i in range(10, 16):
        gop.add(i, keyframe=i == 10)
    assert list(gop) == [10, 11, 12, 13]  # bounded: the keyframe and what follows it
    gop.add(20, keyframe=True)
    gop.add(21, keyframe=False)
    assert list(gop) == [20, 21]
    gop.reset()
    gop.add(22, keyframe=False)
    assert len(gop) == 0


def test_keyframe_gate_drops_to_the_next_keyframe() -> None:
    gate = KeyframeGate()
    assert [gate.passes(k) for k in (False, True, False)] == [False, True, True]
    gate.lose()
    assert [gate.passes(k) for k in (False, False, True, False)] == [False, False, True, True]
    assert KeyframeGate(waiting=False).passes(False)


async def test_late_consumer_starts_at_the_cached_keyframe(
        zctx: zmq.Context[zmq.Socket[bytes]], runtime_dir: Path) -> None:
    pub = MediaPublisher(zctx, endpoint(runtime_dir))
    early = MediaSubscriber(zctx, pub.endpoint)
    late: MediaSubscriber | None = None
    try:
        await subscribed(pub, early)
        for i in range(15):  # keyframes at 0 and 10: the cached GOP is 10..14
            publish(pub, i, gop=10)
        got_early = [index_of(await early.recv()) for _ in range(15)]
        assert got_early == list(range(15))

        late = MediaSubscriber(zctx, pub.endpoint)
        await subscribed(pub, late)
        publish(pub, 15, gop=10)  # the publisher serves the new subscription first
        async with asyncio.timeout(5):
            got_late = [await late.recv() for _ in range(6)]
        assert [index_of(f) for f in got_late] == [10, 11, 12, 13, 14, 15]
        assert got_late[0].keyframe and not any(f.keyframe for f in got_late[1:])
        assert late.stats.gaps == 0 and late.stats.dropped_to_keyframe == 0
        assert pub.stats.replayed == 5 and pub.stats.subscriptions == 2

        # The replay reached the early consumer too; it skips it by sequence.
        async with asyncio.timeout(5):
            assert index_of(await early.recv()) == 15
        assert early.stats.replays_skipped == 5 and early.stats.gaps == 0
    finally:
        early.close()
        if late is not None:
            late.close()
        pub.close()


async def test_slow_consumer_resyncs_at_keyframes_and_never_stalls_a_fast_one(
        zctx: zmq.Context[zmq.Socket[bytes]], runtime_dir: Path) -> None:
    frames, rate, gop = 600, 300.0, 30  # 2 s at 10x real time, 8 KB units (~2 Mbit/s at 30 fps)
    pub = MediaPublisher(zctx, endpoint(runtime_dir))
    fast = MediaSubscriber(zctx, pub.endpoint)
    slow = MediaSubscriber(zctx, pub.endpoint)
    fast_got: list[MediaFrame] = []
    slow_got: list[MediaFrame] = []

    async def producer() -> None:
        t0 = time.monotonic()
        for i in range(frames):
            publish(pub, i, gop, size=8192)
            await asyncio.sleep(max(0.0, t0 + (i + 1) / rate - time.monotonic()))  # pacing

    async def consume(sub: MediaSubscriber, into: list[MediaFrame], delay: float) -> None:
        while True:
            frame = await sub.recv()
            into.append(frame)
            if delay:
                await asyncio.sleep(delay)  # a consumer that cannot keep up

    async def idle(into: list[MediaFrame], quiet_s: float = 0.3) -> None:
        async with asyncio.timeout(10):
            seen = -1
            while len(into) != seen:
                seen = len(into)
                await asyncio.sleep(quiet_s)

    try:
        await take_subscriptions(pub, 2)  # both are in before the first frame
        consumers = [asyncio.create_task(consume(fast, fast_got, 0.0)),
                     asyncio.create_task(consume(slow, slow_got, 0.01))]
        await producer()
        # Let the slow one empty its queues, then send one last keyframe: every
        # sequence number is then either received or counted as missed.
        await idle(slow_got)
        publish(pub, frames, gop)
        async with asyncio.timeout(5):
            while not slow_got or index_of(slow_got[-1]) != frames:
                await asyncio.sleep(0.01)
        for task in consumers:
            task.cancel()
        await asyncio.gather(*consumers, return_exceptions=True)
    finally:
        fast.close()
        slow.close()
        pub.close()

    # The publisher never waited for the slow consumer: it dropped for that one alone (its
    # losses below) while the fast one got everything. How long a publish() takes is a
    # figure for a benchmark, not for this test.

    # The fast consumer got every frame, in order, no gaps.
    assert [index_of(f) for f in fast_got] == list(range(frames + 1))
    assert fast.stats.gaps == 0 and fast.stats.missed == 0 and fast.stats.dropped_to_keyframe == 0

    # The slow one lost frames, counted, and after every gap restarted at a keyframe.
    s = slow.stats
    assert s.gaps >= 1 and s.missed > 0 and s.dropped_to_keyframe > 0, s
    assert s.received + s.missed == frames + 1, s
    assert s.delivered == len(slow_got) == s.received - s.dropped_to_keyframe
    assert slow_got[0].keyframe
    for prev, frame in zip(slow_got, slow_got[1:], strict=False):
        assert frame.seq > prev.seq
        if frame.seq != prev.seq + 1:
            assert frame.keyframe, (prev.seq, frame.seq)


async def test_publisher_restart_is_a_new_epoch(
        zctx: zmq.Context[zmq.Socket[bytes]], runtime_dir: Path) -> None:
    ep = endpoint(runtime_dir)
    first = MediaPublisher(zctx, ep)
    sub = MediaSubscriber(zctx, ep)
    second: MediaPublisher | None = None
    try:
        await subscribed(first, sub)
        for i in range(25):
            publish(first, i, gop=10)
        async with asyncio.timeout(5):
            before = [await sub.recv() for _ in range(25)]
        assert [f.seq for f in before] == list(range(1, 26))
        first.close()
        # Nothing to wait for: the subscriber reconnects by itself to whoever binds the
        # endpoint next, and the pump below publishes until it has received 12.

        second = restarted = MediaPublisher(zctx, ep)
        assert second.epoch != first.epoch
        # The new process joins its source mid-GOP: units before its first keyframe
        # cannot be decoded and must not be delivered.
        received: list[MediaFrame] = []

        async def pump() -> None:
            i = 5
            while len(received) < 12:
                publish(restarted, i, gop=10)
                i += 1
                await asyncio.sleep(0.005)

        async def take() -> None:
            while len(received) < 12:
                received.append(await sub.recv())

        async with asyncio.timeout(10):
            await asyncio.gather(pump(), take())
    finally:
        sub.close()
        if second is not None:
            second.close()
    assert {f.epoch for f in received} == {second.epoch}
    assert received[0].keyframe
    assert [f.seq for f in received] == list(range(received[0].seq, received[0].seq + 12))
    assert sub.stats.restarts == 1
    # Sequence numbers began again at 1: that is a restart, not a gap or a replay.
    assert sub.stats.gaps == 0 and sub.stats.replays_skipped == 0


async def test_malformed_media_frames_are_dropped_and_counted(
        zctx: zmq.Context[zmq.Socket[bytes]], runtime_dir: Path) -> None:
    ep = endpoint(runtime_dir)
    raw: zmq.Socket[bytes] = zctx.socket(zmq.XPUB)
    raw.setsockopt(zmq.LINGER, 0)
    raw.bind(ep)
    sub = MediaSubscriber(zctx, ep)
    try:
        async with asyncio.timeout(5):
            while not raw.poll(0, zmq.POLLIN):
                await asyncio.sleep(0.01)
        raw.recv()
        good = MediaFrame(7, 1, True, 0, 0, TB, "h264", time.time_ns(), b"\x00\x00\x00\x01\x65")
        bad: list[list[bytes]] = [
            [b"au"],                                          # too few frames
            [b"xx", *encode(good)[1:]],                       # wrong topic
            [b"au", b"\xc1not msgpack", b"data"],             # undecodable header
            [b"au", msgpack.packb([7, 1, True]), b"data"],    # header too short
            [b"au", msgpack.packb([7, "x", 1, 0, 0, 1, 0, "h264", 0]), b"d"],  # wrong types
            [*encode(good), b"extra"],                        # too many frames
        ]
        for message in bad:
            raw.send_multipart(message)
        raw.send_multipart(encode(good))
        async with asyncio.timeout(5):
            frame = await sub.recv()
        assert frame == good
        assert sub.stats.malformed == len(bad)
        assert sub.stats.received == 1 and sub.stats.delivered == 1
    finally:
        sub.close()
        raw.close(linger=0)
