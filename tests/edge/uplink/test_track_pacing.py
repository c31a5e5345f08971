"""The passthrough track paces a catch-up GOP to the link instead of bursting it."""

from __future__ import annotations

import asyncio
import time
from fractions import Fraction

import pytest

from edge.media.wire import MediaFrame
from edge.uplink.fanout import Sink
from edge.uplink.link_budget import MEDIA_BURST_S, LinkBudget
from edge.uplink.track import PassthroughTrack

pytestmark = pytest.mark.timeout(30)

UNIT = 50_000  # bytes: a large main-stream frame


def gop(n: int) -> Sink:
    sink = Sink()
    for i in range(n):
        sink.offer(MediaFrame(epoch=1, seq=i + 1, keyframe=i == 0, pts=i * 3000, dts=i * 3000,
                              time_base=Fraction(1, 90000), codec="h264",
                              received_ns=time.time_ns(), data=b"\x00" * UNIT), catchup=True)
    return sink


async def send_all(track: PassthroughTrack, n: int) -> None:
    for _ in range(n):
        await asyncio.wait_for(track.recv(), 10)


async def test_a_catchup_gop_is_held_to_the_pace() -> None:
    rate = 8_000_000.0
    track = PassthroughTrack(gop(10), LinkBudget(rate, MEDIA_BURST_S))
    await send_all(track, 10)
    # What the burst allowance cannot cover must wait for the link. The holds are what
    # the track computed, not a clock reading; a late wake-up only shortens later ones.
    owed = (10 * UNIT * 8 - rate * MEDIA_BURST_S) / rate
    assert 0 < track.paced_s <= owed * 1.001
    assert track.sent == 10


async def test_the_first_unit_leaves_at_once_and_nothing_is_held_without_a_pace() -> None:
    paced = PassthroughTrack(gop(1), LinkBudget(8_000_000.0, MEDIA_BURST_S))
    await send_all(paced, 1)
    assert paced.paced_s == 0.0  # a frame within the burst allowance
    unpaced = PassthroughTrack(gop(10))
    await send_all(unpaced, 10)
    assert unpaced.paced_s == 0.0


async def test_two_viewers_on_one_link_share_its_pace() -> None:
    # Two viewers joining at once: together they may not leave faster than the
    # link, so what they are held back is what one viewer sending both GOPs
    # would be held back.
    rate = 8_000_000.0
    budget = LinkBudget(rate, MEDIA_BURST_S)
    a, b = PassthroughTrack(gop(10), budget), PassthroughTrack(gop(10), budget)
    await asyncio.gather(send_all(a, 10), send_all(b, 10))
    alone = PassthroughTrack(gop(10), LinkBudget(rate, MEDIA_BURST_S))
    await send_all(alone, 10)
    assert a.sent == b.sent == 10
    # The holds are computed, not measured. Alone, a viewer is held about 7 × 50 ms;
    # sharing, each unit waits for the other viewer's too (about 17 × 100 ms in all),
    # while two separate budgets would hold the pair back twice one viewer alone.
    assert a.paced_s + b.paced_s > 3 * alone.paced_s
