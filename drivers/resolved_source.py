"""A source whose address is learnt while it runs, and may change.

A drone announces its gimbal camera's RTSP URL over MAVLink, and another one
when it switches cameras; an ONVIF camera answers GetStreamUri. Whoever
knows the protocol supplies `addresses`, an async iterator that may wait as
long as it likes; for each address `connect(address, sink, on_state)` builds
the source that reads it, and the previous one is let go. To its user this
is one source throughout: the same sink, one `on_state`, and the figures of
whichever source is current.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Callable

from drivers.source import (
    AccessUnitSink,
    Source,
    SourceState,
    SourceStats,
    StateCallback,
    StreamInfo,
)

log = logging.getLogger(__name__)

Connect = Callable[[str, AccessUnitSink, StateCallback], Source]


class ResolvedSource:
    """A :class:`drivers.source.Source` that reads whatever address it was last given."""

    def __init__(self, addresses: AsyncGenerator[str, None], connect: Connect, *, name: str,
                 waiting: str, sink: AccessUnitSink,
                 on_state: StateCallback | None = None) -> None:
        self.name = name
        self.sink = sink
        self._addresses = addresses
        self._connect = connect
        self._waiting = waiting  # the reason while there is no address (yet)
        self._on_state = on_state
        self._inner: Source | None = None
        # Bumped at each switch: news from a source being let go is not ours any more.
        self._generation = 0
        self._task: asyncio.Task[None] | None = None
        self._state, self._reason = SourceState.CONNECTING, "not started"

    @property
    def stream_info(self) -> StreamInfo | None:
        return self._inner.stream_info if self._inner is not None else None

    @property
    def stats(self) -> SourceStats:
        if self._inner is not None:
            return self._inner.stats
        return SourceStats.idle(self._state, self._reason)

    async def start(self) -> None:
        if self._task is not None:
            return
        self._report(SourceState.CONNECTING, self._waiting)
        self._task = asyncio.create_task(self._follow(), name=f"resolve {self.name}")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        if self._inner is not None:
            await self._inner.stop()  # it reports STOPPED itself, and keeps its figures
        else:
            self._report(SourceState.STOPPED, "stopped")

    async def request_keyframe(self) -> str | None:
        if self._inner is None:
            return self._reason
        return await self._inner.request_keyframe()

    async def _follow(self) -> None:
        try:
            async with contextlib.aclosing(self._addresses) as addresses:
                async for address in addresses:
                    await self._switch(address)
        except Exception:
            log.exception("%s: resolving its address failed; keeping the current source",
                          self.name)

    async def _switch(self, address: str) -> None:
        self._generation += 1
        generation = self._generation
        old, self._inner = self._inner, None
        self._report(SourceState.CONNECTING, self._waiting)
        if old is not None:
            await old.stop()

        def on_state(state: SourceState, reason: str) -> None:
            if generation == self._generation:
                self._report(state, reason)

        self._inner = self._connect(address, self.sink, on_state)
        await self._inner.start()

    def _report(self, state: SourceState, reason: str) -> None:
        if (state, reason) == (self._state, self._reason):
            return
        self._state, self._reason = state, reason
        if self._on_state is not None:
            try:
                self._on_state(state, reason)
            except Exception:
                log.exception("%s: on_state callback failed", self.name)
