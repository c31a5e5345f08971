"""SIPp (Debian `sip-tester`) as a GB/T 28181 device: a peer nobody here wrote.

A scenario runs as a subprocess against a platform's address; `finish()` waits for
it and returns its exit status with its error and message logs, for the assertion
message when it failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support import REPO, die_with_test, free_port, require

SIPP = shutil.which("sipp") or "/usr/bin/sipp"
SCENARIOS = REPO / "tests" / "drivers" / "gb28181" / "sipp"

PLATFORM_ID = "34020000002000000001"
REALM = "3402000000"
DEVICE_ID = "34020000001320000001"
PASSWORD = "12345678"


def require_sipp() -> None:
    require(os.access(SIPP, os.X_OK), "SIPp is not installed (Debian package sip-tester)")


@dataclass
class SippResult:
    returncode: int
    errors: str
    messages: str
    stderr: str

    def explain(self) -> str:
        return (f"sipp exited {self.returncode}\n--- errors ---\n{self.errors[-3000:]}\n"
                f"--- stderr ---\n{self.stderr[-2000:]}\n--- messages ---\n"
                f"{self.messages[-6000:]}")


class Sipp:
    """One running scenario."""

    def __init__(self, proc: asyncio.subprocess.Process, workdir: Path) -> None:
        self.proc = proc
        self.workdir = workdir

    async def finish(self, within: float = 30.0) -> SippResult:
        """Wait for the scenario to end (`within` only bounds a broken test)."""
        try:
            _, err = await asyncio.wait_for(self.proc.communicate(), within)
        except TimeoutError:
            self.proc.kill()
            _, err = await self.proc.communicate()
            result = self._result(err)
            raise AssertionError(f"sipp still running after {within:g} s\n"
                                 f"{result.explain()}") from None
        return self._result(err)

    def _result(self, err: bytes) -> SippResult:
        def read(name: str) -> str:
            path = self.workdir / name
            return path.read_text(errors="replace") if path.exists() else ""

        return SippResult(self.proc.returncode if self.proc.returncode is not None else -1,
                          read("errors.log"), read("messages.log"),
                          err.decode(errors="replace"))


@asynccontextmanager
async def sipp(scenario: str, target: tuple[str, int], workdir: Path, *,
               transport: str = "udp", out_of_call: str | None = None,
               password: str = PASSWORD, device_id: str = DEVICE_ID,
               timeout: float = 20.0) -> AsyncIterator[Sipp]:
    """Run `scenario` (a file under tests/drivers/gb28181/sipp/) as device `device_id`.

    `out_of_call` answers requests that belong to no call of the scenario (the
    platform's queries start transactions of their own). SIPp's own `-timeout` ends it
    should the platform never answer; the process is killed on the way out regardless.
    """
    require_sipp()
    os.makedirs(workdir, exist_ok=True)
    argv = [SIPP, "-sf", str(SCENARIOS / scenario), "-t", "u1" if transport == "udp" else "t1",
            "-i", "127.0.0.1", "-p", str(free_port()), "-m", "1",
            "-au", device_id, "-ap", password,
            "-key", "device_id", device_id, "-key", "platform_id", PLATFORM_ID,
            "-key", "realm", REALM,
            "-timeout", f"{timeout:g}s", "-timeout_error",
            "-trace_err", "-error_file", str(workdir / "errors.log"),
            "-trace_msg", "-message_file", str(workdir / "messages.log"),
            "-nostdin", "-nd"]
    if out_of_call is not None:
        argv += ["-oocsf", str(SCENARIOS / out_of_call)]
    argv.append(f"{target[0]}:{target[1]}")
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        cwd=workdir, preexec_fn=die_with_test)
    try:
        yield Sipp(proc, workdir)
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGKILL)
            await proc.wait()
