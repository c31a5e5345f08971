"""Fanout, sinks and the passthrough track's timestamps, without network or cameras."""

from __future__ import annotations

import asyncio
import time
from fractions import Fraction

import pytest

from edge.media.wire import MediaFrame
from edge.uplink.fanout import Fanout, Sink, SinkClosed
from edge.uplink.track import PassthroughTrack
from tests.support import eventually

pytestmark = pytest.mark.timeout(30)

TB = Fraction(1, 90000)


def unit(seq: int, *, gop: int = 30, epoch: int = 1, pts: int | None = -1,
         received_ns: int | None = None) -> MediaFrame:
    return MediaFrame(epoch, seq, seq % gop == 0, seq * 3000 if pts == -1 else pts, None, TB,
                      "h264", received_ns if received_ns is not None else time.time_ns(),
                      b"\x00\x00\x00\x01" + bytes([seq % 256]))


class Source:
    """A FrameSource the test feeds."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[MediaFrame] = asyncio.Queue()
        self.closed = False

    async def recv(self) -> MediaFrame:
        return await self.queue.get()

    def close(self) -> None:
        self.closed = True


def test_sink_starts_at_a_keyframe_and_drops_to_the_next_when_behind() -> None:
    sink = Sink(live_backlog=5)
    sink.offer(unit(1))
    assert len(sink) == 0 and sink.stats.skipped == 1
    for seq in range(30, 35):
        sink.offer(unit(seq))
    assert len(sink) == 5
    sink.offer(unit(35))  # a sixth live unit unread: the viewer is behind
    assert len(sink) == 0 and sink.stats.resyncs == 1 and sink.stats.dropped == 5
    for seq in range(36, 60):
        sink.offer(unit(seq))
    assert len(sink) == 0
    sink.offer(unit(60))
    assert len(sink) == 1


def test_catch_up_units_do_not_count_as_backlog() -> None:
    sink = Sink(live_backlog=5)
    for seq in range(30, 50):
        sink.offer(unit(seq), catchup=True)
    sink.offer(unit(50))
    assert len(sink) == 21 and sink.stats.resyncs == 0


async def test_closed_sink_ends_the_reader() -> None:
    sink = Sink()
    reader = asyncio.create_task(sink.get())
    await asyncio.sleep(0)
    sink.close()
    with pytest.raises(SinkClosed):
        await reader


async def test_a_stalled_viewer_never_holds_back_another() -> None:
    source = Source()
    fanout = Fanout(("cam", "main"), lambda: source)
    reading, stalled = fanout.add_sink(), fanout.add_sink(live_backlog=30)
    got: list[int] = []

    async def read() -> None:
        while True:
            frame, _ = await reading.get()
            got.append(frame.seq)

    reader = asyncio.create_task(read())
    for seq in range(300):
        source.queue.put_nowait(unit(seq))
        if seq % 10 == 0:
            await asyncio.sleep(0)  # pacing: the reader runs in between
    await eventually(lambda: len(got) >= 300, what="the reading viewer's 300 frames")
    assert got == list(range(300))
    assert len(stalled) <= 30 and stalled.stats.resyncs >= 8
    reader.cancel()
    await fanout.remove_sink(reading)
    await fanout.remove_sink(stalled)
    assert source.closed and not fanout.running


async def test_history_is_catch_up_and_a_late_viewer_starts_from_the_gop() -> None:
    source = Source()
    fanout = Fanout(("cam", "main"), lambda: source)
    past = time.time_ns() - 500_000_000
    first = fanout.add_sink()
    # What the publisher replays on subscription predates it: catch-up.
    for seq in range(30, 35):
        source.queue.put_nowait(unit(seq, received_ns=past))
    source.queue.put_nowait(unit(35))
    await eventually(lambda: len(first) >= 6, what="the six units at the first viewer")
    flags = [await first.get() for _ in range(6)]
    assert [c for _, c in flags] == [True] * 5 + [False]
    late = fanout.add_sink()
    frames = [await late.get() for _ in range(6)]
    assert frames[0][0].keyframe and all(c for _, c in frames)
    assert [f.seq for f, _ in frames] == list(range(30, 36))
    await fanout.stop()


async def test_a_restarted_camera_restarts_every_viewer_at_its_keyframe() -> None:
    source = Source()
    fanout = Fanout(("cam", "main"), lambda: source)
    sink = fanout.add_sink()
    for seq in range(30, 33):
        source.queue.put_nowait(unit(seq))
    source.queue.put_nowait(unit(5, epoch=2))  # new process, not a keyframe: skipped
    source.queue.put_nowait(unit(30, epoch=2))
    await eventually(lambda: fanout.restarts >= 1 and len(sink) >= 1,
                     what="the restart seen and the new keyframe queued")
    assert fanout.restarts == 1 and sink.stats.dropped == 3
    frame, _ = await sink.get()
    assert (frame.epoch, frame.seq) == (2, 30)
    await fanout.stop()


async def test_track_timestamps() -> None:
    sink = Sink()
    track = PassthroughTrack(sink)
    now = time.time_ns()
    sink.offer(unit(30, received_ns=now - 10**9), catchup=True)
    sink.offer(unit(31, received_ns=now - 10**9), catchup=True)
    sink.offer(unit(32, received_ns=now))  # live: the camera's own spacing
    sink.offer(unit(33, pts=None, received_ns=now + 50_000_000))  # no pts: wall clock
    sink.offer(unit(60, epoch=9, received_ns=now + 100_000_000))  # camera restarted
    stamps = [(await track.recv()).pts for _ in range(5)]
    assert stamps == [0, 1, 3001, 3001 + 4500, 3001 + 4500 + 4500]
    assert track.sent == 5 and track.keyframes == 2
    track.stop()
    assert sink.closed


async def test_fallen_behind_the_fanout_skips_to_a_fresh_keyframe() -> None:
    source = Source()
    fanout = Fanout(("cam", "main"), lambda: source)
    sink = fanout.add_sink()
    old = time.time_ns() - 3 * 10**9  # read 3 s after the camera got them: we were stuck
    for seq in range(30, 35):
        source.queue.put_nowait(unit(seq, received_ns=old + 1))  # after subscribing
    fanout._subscribed_ns = old  # as if subscribed before those units arrived
    source.queue.put_nowait(unit(35))  # fresh, but not a keyframe: still skipping
    source.queue.put_nowait(unit(60))  # fresh keyframe: on again
    source.queue.put_nowait(unit(61))
    await eventually(lambda: len(sink) >= 2, what="the fresh keyframe and its follower queued")
    assert fanout.stale == 6
    assert [(await sink.get())[0].seq for _ in range(2)] == [60, 61]
    await fanout.stop()
