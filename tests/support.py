"""Helpers the service and CLI tests share: a hosted service, an inbox, the `edge` command."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

from edge.bus.client import BusClient, Subscription
from edge.bus.endpoints import Endpoints
from edge.bus.messages import Message
from edge.config import VehicleConfig
from edge.runtime.service import Service, ServiceContext, host

REPO = Path(__file__).resolve().parent.parent
M = TypeVar("M", bound=Message)
S = TypeVar("S", bound=Service)


@dataclass
class Hosted(Generic[S]):
    ctx: ServiceContext
    service: S


@asynccontextmanager
async def hosted(cls: type[S], name: str, config: VehicleConfig, config_path: Path,
                 endpoints: Endpoints, *, ready_within: float = 10.0
                 ) -> AsyncIterator[Hosted[S]]:
    """`cls` run by the real service runner in this event loop, stopped as SIGTERM would."""
    instance = name.partition("@")[2] or None
    ctx = ServiceContext(name=name, instance=instance, config=config, config_path=config_path,
                         endpoints=endpoints, bus=BusClient(endpoints, source=name),
                         log=logging.getLogger(name))
    built: list[S] = []
    stop = asyncio.Event()
    task = asyncio.create_task(host(cls, ctx, stop, on_built=built.append))  # type: ignore[arg-type]
    ready = asyncio.create_task(ctx._ready.wait())
    await asyncio.wait({task, ready}, timeout=ready_within, return_when=asyncio.FIRST_COMPLETED)
    ready.cancel()
    if not ctx._ready.is_set():
        stop.set()
        code = await asyncio.wait_for(task, 6)
        raise AssertionError(f"{name} did not get ready (exit {code})")
    try:
        yield Hosted(ctx, built[0])
    finally:
        stop.set()
        assert await asyncio.wait_for(task, 6) == 0, f"{name} did not stop cleanly"


class Inbox:
    """Everything a subscription delivered, kept, so one wait does not eat another's message."""

    def __init__(self, sub: Subscription) -> None:
        self.sub = sub
        self.seen: list[tuple[str, Message, list[bytes]]] = []

    def mark(self) -> int:
        """A point in the history; `expect(since=mark)` looks only at what came after it."""
        return len(self.seen)

    async def expect(self, kind: type[M], where: Callable[[M], bool] = lambda m: True,
                     within: float = 10.0, topic: str | None = None, since: int = 0) -> M:
        return (await self.expect_env(kind, where, within, topic, since))[0]

    async def expect_env(self, kind: type[M], where: Callable[[M], bool] = lambda m: True,
                         within: float = 10.0, topic: str | None = None,
                         since: int = 0) -> tuple[M, list[bytes]]:
        def match(item: tuple[str, Message, list[bytes]]) -> tuple[M, list[bytes]] | None:
            t, m, blobs = item
            if isinstance(m, kind) and (topic is None or t == topic) and where(m):
                return m, blobs
            return None

        for item in self.seen[since:]:
            if (found := match(item)) is not None:
                return found

        async def more() -> tuple[M, list[bytes]]:
            while True:
                env = await self.sub.recv()
                if env.message is None:
                    continue
                self.seen.append((env.topic, env.message, env.blobs))
                if (found := match(self.seen[-1])) is not None:
                    return found

        return await asyncio.wait_for(more(), within)

    async def count(self, kind: type[Message], seconds: float) -> int:
        """How many `kind` messages arrive in the next `seconds`."""
        start = self.mark()
        with contextlib.suppress(TimeoutError):
            await self.expect(Message, lambda m: False, within=seconds, since=start)
        return sum(1 for _, m, _ in self.seen[start:] if isinstance(m, kind))

    def all(self, kind: type[M]) -> list[M]:
        return [m for _, m, _ in self.seen if isinstance(m, kind)]


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port nothing listens on right now (TCP by default, or `socket.SOCK_DGRAM`)."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def run_edge(*args: str, env: dict[str, str] | None = None,
                   timeout: float = 30) -> tuple[int, str, str]:
    """`edge ARGS` as a user runs it: its exit code, stdout and stderr."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "edge", *args, cwd=REPO, env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()
