"""Whether a local TCP port answers: how the demo and the benches wait for a simulator."""

from __future__ import annotations

import asyncio
import contextlib


async def answers(port: int, host: str = "127.0.0.1") -> bool:
    """True if something accepts a TCP connection on `host:port` now (it is closed again)."""
    try:
        _, writer = await asyncio.open_connection(host, port)
    except OSError:
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True
