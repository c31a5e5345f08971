"""Ending tasks for good.

Python 3.11's `asyncio.wait_for` (used inside libraries we run, nats-py among them)
can swallow a cancel that lands as its result does: a task cancelled once may run
on, and a shutdown that awaits it hangs. `cancel_and_wait` cancels again until the
task is done, within a bound, and says which would not end.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from typing import Any

log = logging.getLogger(__name__)

RECANCEL_EVERY_S = 0.5


async def cancel_and_wait(tasks: Iterable[asyncio.Task[Any]], give_up_s: float = 10.0) -> None:
    """Cancel `tasks` until each is done, at most `give_up_s`; results and errors dropped
    (a task's own failure was its to report)."""
    tasks = list(tasks)
    pending = {t for t in tasks if not t.done()}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + give_up_s
    while pending and loop.time() < deadline:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=RECANCEL_EVERY_S)
    for task in pending:
        log.error("task %s would not end within %.0f s of being cancelled",
                  task.get_name(), give_up_s)
    for task in tasks:
        if task.done():
            with contextlib.suppress(asyncio.CancelledError, Exception):
                task.result()
