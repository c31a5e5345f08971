"""An event loop on a thread that has joined a network namespace.

The links libraries work on the current network namespace, as the services that use
them do (each runs in its own). A test that plays one end in-process runs that end's
calls here: the TUN wireguard-go makes, the netlink sockets and the routes all land in
the namespace, while the test's own loop keeps relaying the emulated WANs.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from drivers.sim.link import netns

T = TypeVar("T")


class NamespaceLoop:
    """An event loop on a thread that has joined network namespace `ns`."""

    def __init__(self, ns: str) -> None:
        self.name = ns
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=netns.call_in, args=(ns, self._serve),
                                        name=f"loop-{ns}", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_forever()
            self.loop.run_until_complete(self.loop.shutdown_default_executor())
        finally:
            self.loop.close()

    async def run(self, coro: Coroutine[Any, Any, T], within: float = 30) -> T:
        """`coro` run on this loop, awaited from the caller's."""
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return await asyncio.wait_for(asyncio.wrap_future(future), within)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
