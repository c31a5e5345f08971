"""`sync`: the vehicle's bus to its NATS JetStream, which the centre sources.

It publishes only to the vehicle's own NATS server (a JetStream leaf node, a unit of
its own); that server stores what it is given and the centre pulls it over the leaf
link when the link is up (:mod:`edge.sync`). The bus is never held up: a down or slow
NATS only grows the bridge's outbox (:mod:`edge.sync.bridge`), and the service's
health says why, in one line.
"""

from __future__ import annotations

import asyncio
import contextlib

from edge.config import ConfigError
from edge.runtime.service import Service
from edge.sync.bridge import Bridge
from edge.sync.vehicle_nats import client_seed


class SyncService(Service):
    bridge: Bridge | None = None

    async def run(self) -> None:
        cfg = self.ctx.config.sync
        if not cfg.enabled:
            raise ConfigError(str(self.ctx.config_path), [
                "sync.enabled: the bridge to the centre is disabled; set enabled = true in "
                "[sync] to run it"])
        unknown = sorted(set(cfg.telemetry_hz_by_link) - {link.id for link in
                                                          self.ctx.config.links})
        if unknown:
            raise ConfigError(str(self.ctx.config_path), [
                f"sync.telemetry_hz_by_link: {', '.join(unknown)}: no such [[links]] id"])
        seed = client_seed(cfg, self.ctx.config_dir)  # a ConfigError names the file
        sub = self.ctx.bus.subscribe("", raw=True)
        bridge = self.bridge = Bridge(self.ctx.config.vehicle, cfg, sub, nkey_seed=seed)
        tasks = [asyncio.create_task(bridge.read_bus(), name="sync-bus"),
                 asyncio.create_task(bridge.publish_loop(), name="sync-nats")]
        self.ctx.ready(f"bridging the bus to {cfg.nats_url}")
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for t in done:
                t.result()
        finally:
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t
            await bridge.close()
            sub.close()

    def health(self) -> tuple[str, str]:
        bridge = self.bridge
        if bridge is None or not self.ctx._ready.is_set():
            return ("starting", "")
        dropped = sum(bridge.outbox.dropped.values())
        counts = f"{len(bridge.outbox)} queued, {dropped} dropped"
        if not bridge.connected and bridge.last_error:
            return ("degraded", f"{bridge.last_error}; {counts}")
        if dropped or bridge.stats.unencodable:
            return ("degraded", f"{counts}, {bridge.stats.unencodable} unencodable")
        return ("running", f"{bridge.stats.published} published, {counts}")
