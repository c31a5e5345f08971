"""A viewer that lost a picture asks for a keyframe; the camera makes one if it can.

A browser sends a PLI (or FIR) when it cannot decode: a loss NACK did not
repair in time, or a frame it never got. aiortc's sender takes that as "the
next frame I encode is a keyframe", which does nothing for units we pass
through, so recovery waited for the camera's next keyframe: up to a GOP
(1-4 s on dome cameras) of frozen picture.

Now the peer's PLI/FIR reaches :class:`KeyframeAsker`, which asks for the
stream once, however many viewers and PLIs ask in the same moment:

- a transcoded stream (H.265 camera, our own H.264 encoder): the transcoder
  forces an IDR on its next frame;
- a passed-through stream: a ``camera.keyframe`` request on the bus to the
  camera's service (``camera@<id>``), which asks the camera if its source can
  (RTSP ``SET_PARAMETER Renew-Stream``, :mod:`drivers.rtsp.renew_stream`) and
  says ``rejected`` with the reason if it cannot; the viewer then waits for
  the next keyframe, as before.

At most one request per stream is in flight and they are :data:`ASK_EVERY_S`
apart (the camera service has its own limit per camera stream, for every
asker). Counters per outcome are in the uplink's state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable

from edge.uplink.streams import StreamKey

log = logging.getLogger(__name__)

ASK_EVERY_S = 1.0

# Asks the camera service; returns the reply's status ("accepted", "rejected",
# "busy", …) or why there was none.
Ask = Callable[[StreamKey, str], Awaitable[str]]


class KeyframeAsker:
    def __init__(self, ask: Ask, local: Callable[[StreamKey], bool]) -> None:
        self._ask = ask
        self._local = local  # forces an IDR in our own encoder; False if there is none
        self._last: dict[StreamKey, float] = {}
        self._tasks: dict[StreamKey, asyncio.Task[None]] = {}
        self.outcomes: Counter[str] = Counter()

    def want(self, key: StreamKey, reason: str) -> None:
        """A viewer of `key` needs a keyframe; ask unless asked just now."""
        now = time.monotonic()
        last = self._last.get(key)
        if key in self._tasks or (last is not None and now - last < ASK_EVERY_S):
            self.outcomes["coalesced"] += 1
            return
        self._last[key] = now
        if key.transcoded:
            self.outcomes["encoder" if self._local(key) else "no encoder"] += 1
            return
        task = asyncio.create_task(self._request(key, reason), name=f"keyframe-{key.name}")
        self._tasks[key] = task
        task.add_done_callback(lambda _t: self._tasks.pop(key, None))

    async def _request(self, key: StreamKey, reason: str) -> None:
        try:
            outcome = await self._ask(key, reason)
        except Exception as e:  # the bus or the camera service: the viewer waits, as before
            outcome = "failed"
            log.debug("keyframe for %s: %s", key.name, e)
        self.outcomes[outcome] += 1

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
