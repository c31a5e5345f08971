"""The broker as a service: `edge run bus`."""

from __future__ import annotations

import asyncio

from edge.bus.broker import Broker
from edge.runtime.service import Service


class BusService(Service):
    async def run(self) -> None:
        broker = Broker(self.ctx.endpoints)
        self.broker = broker
        broker.bind()
        self.ctx.ready(f"forwarding on {self.ctx.endpoints.sub}")
        # The poll loop is synchronous by design; it gets its own thread and is
        # stopped through its inproc control socket (a thread cannot be cancelled).
        thread = asyncio.ensure_future(asyncio.to_thread(broker.run))
        try:
            await asyncio.shield(thread)
        finally:
            broker.stop()
            await thread

    def health(self) -> tuple[str, str]:
        broker = getattr(self, "broker", None)
        if broker is None:
            return ("starting", "")
        s = broker.stats
        live = len(broker.services)
        return ("running", f"forwarded {s.forwarded}, {len(broker.cache)} state topics cached, "
                           f"{live} services, {sum(s.malformed.values())} malformed")
