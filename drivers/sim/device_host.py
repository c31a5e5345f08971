"""Several simulated devices in one process and one event loop.

`edge demo` runs all its simulated cameras in one process (`edge sim cameras`) and all
its drones in another (`edge sim drones`): an interpreter with PyAV, OpenCV and numpy
loaded cost each camera of the demo 40-50 MB, most of it the same libraries again. The
devices are asyncio servers already, so one loop serves them all.

One process must not make one device's trouble everybody's: a device that cannot
listen (its port taken) or that fails while serving is one error line naming it and is
started again with the supervisor's backoff (0.5 s doubling to 10 s, reset after 30 s
of good running), as the supervisor restarted a process of its own, while the others
go on serving. Only when no device can listen at the start does the host give up
(`NoneStarted`): the ports are all someone else's, and a process serving nothing would
only hide that.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Sequence
from typing import Protocol

log = logging.getLogger(__name__)

RETRY_FIRST_S = 0.5
RETRY_MAX_S = 10.0
HEALTHY_S = 30.0  # a device that served this long is retried quickly again


class DeviceError(Exception):
    """A device cannot start or serve: one line naming the device and why."""


def why(exc: OSError) -> str:
    """An OSError in a few words: asyncio's bind errors carry a long sentence with the
    address in `strerror`, where the errno's own words are what an operator needs."""
    return os.strerror(exc.errno) if exc.errno else str(exc)


class NoneStarted(Exception):
    """No device could start: `problems` has one line for each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


class HostedDevice(Protocol):
    """One simulated device as the host runs it. `start` listens (`DeviceError` when it
    cannot); `serve` runs until cancelled (raising `DeviceError` if the device fails);
    `close` releases everything and may be called at any time, more than once."""

    @property
    def name(self) -> str: ...

    async def start(self) -> None: ...

    async def serve(self) -> None: ...

    async def close(self) -> None: ...


def _problem(device: HostedDevice, exc: Exception) -> str:
    if isinstance(exc, DeviceError):
        return str(exc)
    # A failure we did not foresee: still one line, with what Python called it.
    return f"{device.name}: {exc or type(exc).__name__}"


class DeviceHost:
    """Runs `devices` until cancelled (`run`), each restarted on its own when it fails."""

    def __init__(self, devices: Sequence[HostedDevice], *,
                 retry_first_s: float = RETRY_FIRST_S, retry_max_s: float = RETRY_MAX_S,
                 healthy_s: float = HEALTHY_S) -> None:
        names = [d.name for d in devices]
        if len(set(names)) != len(names):
            raise ValueError(f"two devices named the same: {', '.join(names)}")
        self.devices = list(devices)
        self.retry_first_s = retry_first_s
        self.retry_max_s = retry_max_s
        self.healthy_s = healthy_s
        self.serving: set[str] = set()
        # The last problem of each device not serving now (a test, or a status, reads it).
        self.problems: dict[str, str] = {}
        self.starts: dict[str, int] = {}  # by name: how often each was started
        self._keepers: list[asyncio.Task[None]] = []

    async def run(self) -> None:
        """Start every device, then keep them until cancelled; `NoneStarted` if none can
        start. Every device is closed on the way out."""
        try:
            await self.start()
            await asyncio.gather(*self._keepers)
        finally:
            await self.close()

    async def start(self) -> None:
        """Start every device at once; raises `NoneStarted` (all closed) if none could."""
        started = await asyncio.gather(*(self._start(d) for d in self.devices))
        if self.devices and not any(started):
            problems = [self.problems[d.name] for d in self.devices]
            await self.close()
            raise NoneStarted(problems)
        for device, ok in zip(self.devices, started, strict=True):
            said = None
            if not ok:
                # The others serve: this one is one line, and is tried again.
                said = self._say(self.problems[device.name], None, "trying again")
            self._keepers.append(asyncio.create_task(self._keep(device, said),
                                                     name=f"keep {device.name}"))

    async def close(self) -> None:
        keepers, self._keepers = self._keepers, []
        for task in keepers:
            task.cancel()
        for task in keepers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        # Together: each may wait for its connections, and the supervisor's grace is 5 s.
        results = await asyncio.gather(*(d.close() for d in self.devices),
                                       return_exceptions=True)
        for device, result in zip(self.devices, results, strict=True):
            if isinstance(result, Exception):
                log.warning("%s", _problem(device, result))
        self.serving.clear()

    async def _start(self, device: HostedDevice) -> bool:
        try:
            await device.start()
        except Exception as e:  # one device's failure is one line, not everybody's
            self.problems[device.name] = _problem(device, e)
            with contextlib.suppress(Exception):
                await device.close()
            return False
        self.starts[device.name] = self.starts.get(device.name, 0) + 1
        self.problems.pop(device.name, None)
        self.serving.add(device.name)
        return True

    @staticmethod
    def _say(problem: str, said: str | None, then: str) -> str:
        # A device that keeps failing the same way is one line, not one every retry.
        if problem != said:
            log.error("%s; %s", problem, then)
        return problem

    async def _keep(self, device: HostedDevice, said: str | None) -> None:
        """Serve `device` (started unless it has a problem `said`), starting it again with
        backoff whenever it fails."""
        loop = asyncio.get_running_loop()
        backoff = self.retry_first_s
        started = said is None
        while True:
            if not started:
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.retry_max_s)
                started = await self._start(device)
                if not started:
                    said = self._say(self.problems[device.name], said, "trying again")
                    continue
                log.info("%s: started again", device.name)
            began = loop.time()
            try:
                await device.serve()
                problem = f"{device.name}: stopped serving"
            except Exception as e:  # as above
                problem = _problem(device, e)
            self.serving.discard(device.name)
            self.problems[device.name] = problem
            if loop.time() - began > self.healthy_s:
                backoff, said = self.retry_first_s, None
            said = self._say(problem, said, "starting it again")
            with contextlib.suppress(Exception):
                await device.close()
            started = False
