"""`nats`: the vehicle's NATS server (a JetStream leaf node), a unit of its own.

It owns one nats-server child (:class:`~edge.sync.nats_server.NatsServer`), its config
written from ``[sync]`` (:mod:`edge.sync.vehicle_nats`): the bridge (`edge run sync`)
publishes to it and it stores what it is given, whether or not the centre is
reachable. The child is started again when it dies (after a pause that grows to
:data:`RESTART_MAX_S`), and a server that will not start is tried again the same way
rather than taking the unit down: the vehicle keeps what it has on disk either way.

Health says, in one line, whether the leaf link to the centre is up, and when it is
not, why, in nats-server's own words (its newest leafnode complaint: a refused key is
"Authorization Violation", an unreachable centre "connection refused" or a timeout).
"""

from __future__ import annotations

import asyncio
import contextlib

from edge.config import ConfigError
from edge.runtime.service import Service
from edge.sync.nats_server import NatsServer, NatsServerError
from edge.sync.vehicle_nats import CONF_NAME, vehicle_nats_spec

LEAF_POLL_S = 1.0
LEAF_GRACE_S = 5.0
RESTART_FIRST_S = 1.0
RESTART_MAX_S = 10.0


def leaf_complaint(lines: list[str]) -> str:
    """nats-server's newest complaint about its leaf connection, without the log prefix."""
    for line in reversed(lines):
        if "[ERR]" in line and "leafnode" in line.lower():
            text = line.partition("[ERR]")[2].strip()
            # "127.0.0.1:7422 - lid:5 - Leafnode Error 'Authorization Violation'"
            return text.rpartition(" - ")[2] if " - " in text else text
    return ""


class NatsService(Service):
    server: NatsServer | None = None
    leaf_up: bool = False
    problem: str = ""  # why the server or its leaf link is not as it should be
    restarts: int = 0

    async def run(self) -> None:
        cfg = self.ctx.config.sync
        if not cfg.enabled:
            raise ConfigError(str(self.ctx.config_path), [
                "sync.enabled: sync to the centre is disabled; set enabled = true in [sync] "
                "to run the vehicle's NATS"])
        spec = vehicle_nats_spec(self.ctx.config, self.ctx.config_dir)
        try:
            spec.check()
        except NatsServerError as e:
            raise ConfigError(str(self.ctx.config_path), [str(e)]) from None
        server = self.server = NatsServer(spec, spec.store_dir / CONF_NAME)
        pause = RESTART_FIRST_S
        try:
            while True:
                try:
                    await server.start()
                except NatsServerError as e:
                    self._say_problem(f"{e}; trying again in {pause:g} s")
                    await asyncio.sleep(pause)
                    pause = min(pause * 2, RESTART_MAX_S)
                    continue
                self.ctx.ready(f"NATS {spec.url}, JetStream domain {spec.domain}")
                self.problem = ""
                watching = asyncio.create_task(self._watch_leaf(server), name="nats-leaf")
                try:
                    code = await server.wait()
                finally:
                    watching.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await watching
                self.leaf_up = False
                self.restarts += 1
                self._say_problem(f"nats-server exited ({code}): {server.last_error()}; "
                                  f"starting it again in {pause:g} s")
                await server.stop()
                await asyncio.sleep(pause)
                pause = min(pause * 2, RESTART_MAX_S)
        finally:
            await server.stop()

    async def _watch_leaf(self, server: NatsServer) -> None:
        url = server.spec.leaf_remote_url
        if not url:
            return
        loop = asyncio.get_running_loop()
        started = loop.time()
        while True:
            try:
                leafs = (await server.monitor_json("/leafz")).get("leafs") or []
                up = bool(leafs)
            except NatsServerError:
                up = False
            if up != self.leaf_up:
                self.leaf_up = up
                if up:
                    self.problem = ""
                    self.ctx.log.info("leaf link to the centre %s up", url)
            why = leaf_complaint(list(server.stderr))
            # A link needs a moment to come up: "down" once the server complains, or late.
            if not up and (why or loop.time() - started > LEAF_GRACE_S):
                why = why or f"not connected after {LEAF_GRACE_S:g} s"
                self._say_problem(f"leaf link to the centre {url} down: {why}; "
                                  "storing locally")
            await asyncio.sleep(LEAF_POLL_S)

    def _say_problem(self, problem: str) -> None:
        # Once per new problem: the log says it when it changes, health says it always.
        if problem != self.problem:
            self.problem = problem
            self.ctx.log.warning("%s", problem)

    def health(self) -> tuple[str, str]:
        server = self.server
        if server is None or not self.ctx._ready.is_set():
            return ("starting", self.problem)
        if not server.running or self.problem:
            return ("degraded", self.problem or "nats-server is not running")
        if not server.spec.leaf_remote_url:
            return ("running", "no centre configured (sync.centre_leaf_url); storing locally")
        if not self.leaf_up:
            return ("running", "leaf link to the centre: connecting")
        restarted = f"; restarted {self.restarts}x" if self.restarts else ""
        return ("running", f"leaf link to the centre {server.spec.leaf_remote_url} up"
                           f"{restarted}")
