"""ResolvedSource over RtspSource: RTSP at whatever URL a resolver supplies, as one source."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

import pytest

from drivers.resolved_source import ResolvedSource
from drivers.rtsp import RtspSource
from drivers.source import AccessUnitSink, SourceState, StateCallback
from tests.support.rtsp import CameraFactory, Units, poll_until

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(60)]

WAITING = "waiting for an address"


async def addresses(queue: asyncio.Queue[str]) -> AsyncGenerator[str, None]:
    while True:
        yield await queue.get()


def rtsp(url: str, sink: AccessUnitSink, on_state: StateCallback) -> RtspSource:
    return RtspSource(url, name="cam/main", sink=sink, on_state=on_state)


async def test_it_reads_each_address_it_is_given(sim_camera: CameraFactory) -> None:
    first = await sim_camera(sub=None)
    second = await sim_camera(main=(640, 360), sub=None)
    urls: asyncio.Queue[str] = asyncio.Queue()
    units = Units()
    states: list[tuple[SourceState, str]] = []
    source = ResolvedSource(addresses(urls), rtsp, name="cam/main", waiting=WAITING, sink=units,
                            on_state=lambda state, reason: states.append((state, reason)))
    await source.start()
    try:
        # Nothing to read yet: connecting, saying why, with nothing counted.
        waiting = source.stats
        assert waiting.state is SourceState.CONNECTING
        assert waiting.reason == WAITING and waiting.packets == 0
        assert source.stream_info is None

        urls.put_nowait(first.url())
        assert (await units.take(1, within=10))[0].keyframe
        await poll_until(lambda: source.stats.state is SourceState.LIVE, within=5)
        info = source.stream_info
        assert info is not None and (info.width, info.height) == (1280, 720)

        mark = len(states)
        urls.put_nowait(second.url())
        await poll_until(lambda: (info := source.stream_info) is not None and info.width == 640
                         and source.stats.state is SourceState.LIVE, within=10)
        # The first camera is let go, and its STOPPED is not this source's: it is switching.
        await poll_until(lambda: first.sessions() == [], within=5)
        assert [s for s, _ in states[mark:]] == [
            SourceState.CONNECTING, SourceState.CONNECTING, SourceState.LIVE]
        assert states[mark][1] == WAITING
        # The same sink throughout: the new camera's units arrive, starting at a keyframe.
        while not (au := (await units.take(1, within=10))[0]).keyframe or au.sequence != 1:
            pass
    finally:
        await source.stop()
    assert states[-1] == (SourceState.STOPPED, "stopped")
    await poll_until(lambda: second.sessions() == [], within=5)


async def test_stopped_before_any_address() -> None:
    urls: asyncio.Queue[str] = asyncio.Queue()
    states: list[SourceState] = []
    source = ResolvedSource(addresses(urls), rtsp, name="cam/main", waiting=WAITING,
                            sink=Units(), on_state=lambda state, _: states.append(state))
    await source.start()
    await source.stop()
    assert states == [SourceState.CONNECTING, SourceState.STOPPED]
    assert source.stats.state is SourceState.STOPPED
