"""Our child processes: dying with their parent, their output's tail, and ending them
(SIGTERM, then SIGKILL if one has not gone within a grace)."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import signal
from pathlib import Path

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """As a child's `preexec_fn` (it runs between fork and exec): SIGTERM the child when
    its parent dies, so that even a `kill -9` of ours leaves no orphans."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def output_tail(path: Path, lines: int = 12) -> str:
    """The last `lines` of what a child wrote to `path`, for an error that names why."""
    text = path.read_text(errors="replace") if path.exists() else ""
    return "\n".join(text.splitlines()[-lines:]) or "(no output)"


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
