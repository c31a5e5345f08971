"""The runner pets systemd's watchdog only while the service's event loop keeps its beat.

A real unix datagram socket stands in for systemd's `$NOTIFY_SOCKET`; a thread
records when each datagram arrives, so it keeps listening while the service
holds the event loop (and with it this test's coroutine) blocked.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.bus.broker import Broker
from edge.bus.endpoints import Endpoints
from edge.config import parse_config
from edge.runtime import service as service_mod
from edge.runtime.sdnotify import NOTIFY_SOCKET_ENV, WATCHDOG_PID_ENV, WATCHDOG_USEC_ENV
from edge.runtime.service import Service, ServiceContext
from tests.support import hosted

pytestmark = pytest.mark.timeout(60)

WATCHDOG_USEC = 200_000  # systemd's timeout; the runner pets at half of it, every 0.1 s


class NotifyListener:
    """systemd's side of the notify socket: every datagram with its arrival time."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.1)
        self.seen: list[tuple[float, str]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._listen, daemon=True, name="notify-listener")
        self._thread.start()

    def _listen(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            now = time.monotonic()
            with self._lock:
                self.seen += [(now, line) for line in data.decode().splitlines()]

    def pets(self, start: float = 0.0, end: float = float("inf")) -> list[float]:
        """When WATCHDOG=1 arrived between `start` and `end` (monotonic clock)."""
        with self._lock:
            return [t for t, line in self.seen if line == "WATCHDOG=1" and start < t < end]

    async def wait_pets(self, n: int, after: float, within: float = 10.0) -> None:
        deadline = time.monotonic() + within
        while len(self.pets(after)) < n:
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(self.pets(after))} of {n} WATCHDOG=1 in {within} s")
            await asyncio.sleep(0.05)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


@pytest.fixture
def listener(runtime_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[NotifyListener]:
    path = runtime_dir / "notify"
    listen = NotifyListener(path)
    monkeypatch.setenv(NOTIFY_SOCKET_ENV, str(path))
    monkeypatch.setenv(WATCHDOG_USEC_ENV, str(WATCHDOG_USEC))
    monkeypatch.delenv(WATCHDOG_PID_ENV, raising=False)
    yield listen
    listen.close()


class Stalling(Service):
    """Serves, and on request blocks its own event loop as a buggy service would."""

    def __init__(self, ctx: ServiceContext) -> None:
        super().__init__(ctx)
        self.stall = asyncio.Event()
        self.block_s = 0.0  # each block of the loop
        self.blocks = 1
        self.blocked: list[tuple[float, float]] = []  # (start, end) of each block, monotonic
        self.done = False

    async def run(self) -> None:
        self.ctx.ready()
        await self.stall.wait()
        for _ in range(self.blocks):
            start = time.monotonic()
            time.sleep(self.block_s)  # noqa: ASYNC251 - the fault under test: a blocked loop
            self.blocked.append((start, time.monotonic()))
            await asyncio.sleep(0.05)  # the loop free a moment for what is due, then blocked again
        self.done = True
        await asyncio.Event().wait()


async def test_watchdog_stops_while_the_loop_is_blocked(
        listener: NotifyListener, endpoints: Endpoints, tmp_path: Path,
        broker: Broker) -> None:
    config = parse_config({"vehicle": "t"})
    async with hosted(Stalling, "stall", config, tmp_path / "v.toml", endpoints) as h:
        svc = h.service
        assert isinstance(svc, Stalling)
        await listener.wait_pets(5, after=0.0)  # healthy: petted every 0.1 s
        svc.block_s, svc.blocks = 1.5, 1
        svc.stall.set()
        while not svc.done:
            await asyncio.sleep(0.05)
        [(start, end)] = svc.blocked
        # A pet sent just before the block may be read a moment into it.
        assert listener.pets(start + 0.2, end) == [], "petted while the loop was blocked"
        await listener.wait_pets(5, after=end)  # and petted again once it beats again


async def test_watchdog_stops_while_the_loop_lags(
        listener: NotifyListener, endpoints: Endpoints, tmp_path: Path,
        broker: Broker, monkeypatch: pytest.MonkeyPatch) -> None:
    """A loop that runs now and then, but far behind its beat, is not healthy either."""
    # The beat is 1 s and a lag of 2 s is unhealthy; scaled down so the test is short.
    monkeypatch.setattr(service_mod, "HEALTH_EVERY_S", 0.2)
    monkeypatch.setattr(service_mod, "LAG_UNHEALTHY_S", 0.4)
    config = parse_config({"vehicle": "t"})
    async with hosted(Stalling, "stall", config, tmp_path / "v.toml", endpoints) as h:
        svc = h.service
        assert isinstance(svc, Stalling)
        await listener.wait_pets(5, after=0.0)
        # Blocks of 1 s with the loop free for a moment in between: the watchdog's own
        # timer is due at every gap, but the health beat measures the lag and the runner
        # holds back.
        svc.block_s, svc.blocks = 1.0, 5
        svc.stall.set()
        while not svc.done:
            await asyncio.sleep(0.05)
        # The first gap may come before the beat has measured the lag: judge from the
        # third block to the end of the last one, the gaps between them included.
        start, end = svc.blocked[2][0], svc.blocked[-1][1]
        assert listener.pets(start, end) == [], \
            "petted while the loop lagged"
        await listener.wait_pets(5, after=end)
