"""Steering a camera in a test as a console does: one `PtzCommand`, or a key held down.

`steer()` asks `camera@<id>` over the real bus and returns its `Reply`. `held()` is a
console with an arrow key down: the same move now (answered before the block runs) and
again every `every` seconds until the block ends, as the dashboard repeats it; what
the camera service answered to each is kept.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from edge.bus import topics
from edge.bus.client import BusClient, RequestError
from edge.bus.messages import PtzCommand, Reply

# The first command to an ONVIF camera connects and reads its PTZ capabilities (half a
# dozen SOAP exchanges, the first WSDL parse of the process): generous on a loaded machine.
STEER_TIMEOUT_S = 15.0


async def steer(bus: BusClient, camera_id: str, action: str, *,
                timeout: float = STEER_TIMEOUT_S, **fields: Any) -> Reply:
    env = await bus.request(topics.camera_service(camera_id),
                            PtzCommand(action=action, **fields), timeout=timeout)
    reply = env.message
    assert isinstance(reply, Reply), reply
    return reply


@contextlib.asynccontextmanager
async def held(bus: BusClient, camera_id: str, *, every: float = 0.3,
               **fields: Any) -> AsyncIterator[list[Reply]]:
    """`move` with `fields`, repeated every `every` s while the block runs."""
    replies = [await steer(bus, camera_id, "move", **fields)]
    released = asyncio.Event()

    async def repeat() -> None:
        while not released.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(released.wait(), every)
            if not released.is_set():
                with contextlib.suppress(RequestError):  # a lost repeat: a console lives on
                    replies.append(await steer(bus, camera_id, "move", **fields))

    # Ended by the event, not by cancelling: asyncio.wait_for on Python 3.11 (the bus
    # request's) can swallow a cancel when its reply lands at the same moment, and the
    # key would stay down for good. Awaited, so no repeat overtakes what the test sends
    # after the block.
    task = asyncio.create_task(repeat())
    try:
        yield replies
    finally:
        released.set()
        await task
