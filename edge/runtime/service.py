"""The base every service process is built on, and the runner that hosts it.

A service subclasses :class:`Service` and implements ``run()``. The runner
gives it a bus client, logging and a :class:`ServiceContext`; publishes its
health at 1 Hz on ``svc/<name>/health``; speaks sd_notify (READY once the
service says so, STATUS, WATCHDOG only while the event loop is responsive);
and stops it on SIGTERM/SIGINT within :data:`STOP_GRACE_S`.
"""

from __future__ import annotations

import abc
import asyncio
import logging
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from edge.bus import topics
from edge.bus.client import BusClient
from edge.bus.endpoints import Endpoints
from edge.bus.messages import ServiceHealth
from edge.config import ConfigError, VehicleConfig
from edge.runtime.sdnotify import Notifier, watchdog_interval_s
from edge.runtime.tasks import cancel_and_wait

STOP_GRACE_S = 4.0  # systemd's and the supervisor's patience is 5 s; keep a margin
HEALTH_EVERY_S = 1.0
LAG_UNHEALTHY_S = 2.0


@dataclass
class ServiceContext:
    name: str  # e.g. "bus", "camera@north-gate"
    instance: str | None
    config: VehicleConfig
    config_path: Path
    endpoints: Endpoints
    bus: BusClient
    log: logging.Logger
    _ready: asyncio.Event = field(default_factory=asyncio.Event)
    _status: str = ""

    def ready(self, status: str = "") -> None:
        """Tell the runner (and systemd) that the service is serving."""
        self._status = status
        self._ready.set()

    @property
    def config_dir(self) -> Path:
        return self.config_path.resolve().parent


class Service(abc.ABC):
    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx

    @abc.abstractmethod
    async def run(self) -> None:
        """Serve until cancelled; call ``self.ctx.ready()`` once serving."""

    def health(self) -> tuple[str, str]:
        """(state, detail): state is running | degraded | starting."""
        return ("running" if self.ctx._ready.is_set() else "starting", "")


class _Runner:
    def __init__(self, service: Service, ctx: ServiceContext, notifier: Notifier) -> None:
        self.service = service
        self.ctx = ctx
        self.notifier = notifier
        self.started = time.monotonic()
        self.lag_s = 0.0

    async def health_loop(self) -> None:
        bus, name = self.ctx.bus, self.ctx.name
        topic = topics.svc_health(name)
        expected = time.monotonic()
        last_status = ""
        while True:
            # The first report goes out at once: a supervisor stopped a moment after a
            # start (a short demo) still knows the service came up.
            state, detail = self.service.health()
            bus.publish(topic, ServiceHealth(
                service=name, pid=os.getpid(), state=state, detail=detail,
                uptime_s=round(time.monotonic() - self.started, 1),
                published=bus.stats.published + 1, received=bus.stats.received,
                malformed=sum(bus.stats.malformed.values()),
                loop_lag_ms=round(self.lag_s * 1000, 1),
            ))
            status = f"{state}: {detail}" if detail else state
            if status != last_status:
                self.notifier.status(status)
                last_status = status
            expected += HEALTH_EVERY_S
            await asyncio.sleep(max(0.0, expected - time.monotonic()))
            self.lag_s = max(0.0, time.monotonic() - expected)
            if self.lag_s > HEALTH_EVERY_S:
                expected = time.monotonic()  # do not burst to catch up after a stall

    async def watchdog_loop(self, every_s: float) -> None:
        while True:
            await asyncio.sleep(every_s)
            # A blocked loop never gets here; a lagging or failed one stops petting.
            if self.lag_s < LAG_UNHEALTHY_S and self.service.health()[0] != "failed":
                self.notifier.watchdog()

    async def ready_notice(self) -> None:
        await self.ctx._ready.wait()
        self.notifier.ready(self.ctx._status or "running")
        self.ctx.log.info("ready%s", f": {self.ctx._status}" if self.ctx._status else "")


async def host(service_cls: type[Service], ctx: ServiceContext,
               stop: asyncio.Event | None = None,
               on_built: Callable[[Service], None] | None = None) -> int:
    """Run one service until it ends or is stopped; the process exit code.

    Without `stop`, SIGTERM and SIGINT stop it (a service process). With one,
    setting it does, and signals are left alone (a service hosted in a test).
    `on_built` sees the service object once it exists.
    """
    if stop is None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
    notifier = Notifier()
    service = service_cls(ctx)
    if on_built is not None:
        on_built(service)
    runner = _Runner(service, ctx, notifier)
    helpers = [asyncio.create_task(runner.health_loop(), name="health"),
               asyncio.create_task(runner.ready_notice(), name="ready")]
    interval = watchdog_interval_s()
    if interval:
        helpers.append(asyncio.create_task(runner.watchdog_loop(interval), name="watchdog"))
    run_task = asyncio.create_task(service.run(), name=f"service-{ctx.name}")
    stop_task = asyncio.create_task(stop.wait(), name="stop-signal")
    code = 0
    try:
        await asyncio.wait({run_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
        if run_task.done() and not run_task.cancelled():
            exc = run_task.exception()
            if isinstance(exc, ConfigError):
                # The operator's mistake, already said in one line: no traceback.
                ctx.log.error("%s", exc)
                code = 2
            elif exc is not None:
                ctx.log.error("service failed: %s", exc, exc_info=exc)
                code = 1
        notifier.stopping()
        ctx.log.info("stopping")
        await cancel_and_wait([run_task], STOP_GRACE_S)
        if not run_task.done():
            ctx.log.error("did not stop within %.0f s; exiting anyway", STOP_GRACE_S)
            code = code or 1
    finally:
        await cancel_and_wait([*helpers, stop_task])
        await ctx.bus.close()
        notifier.close()
    return code
