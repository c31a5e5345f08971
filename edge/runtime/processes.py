"""Ending a child process: SIGTERM, then SIGKILL if it has not gone within a grace."""

from __future__ import annotations

import asyncio
import contextlib


async def stop_process(proc: asyncio.subprocess.Process, within: float) -> None:
    """SIGTERM, and SIGKILL if it has not ended `within` seconds later; reaped either way."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
    try:
        async with asyncio.timeout(within):
            await proc.wait()
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
