"""`edge dashboard`: the commander's terminal dashboard on a running vehicle's bus.

`edge demo` (without --headless) uses :func:`run_demo_dashboard` to show the
same dashboard on the simulated vehicle, in the demo's own event loop.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING

from edge.cli.common import add_bus_arg, add_config_arg, endpoints_for, load

if TYPE_CHECKING:
    from edge.bus.endpoints import Endpoints
    from edge.config import VehicleConfig
    from edge.runtime.supervisor import Supervisor
    from ui.state import DashboardState


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("dashboard", help="the commander's terminal dashboard",
                       description="Cameras, drones, links, viewers and alerts of a running "
                                   "vehicle, from its bus. Press ? inside for every key.")
    add_config_arg(p)
    add_bus_arg(p)
    p.set_defaults(func=cmd_dashboard)


def cmd_dashboard(args: argparse.Namespace) -> int:
    from edge.cli import OperatorError

    config, _ = load(args)
    endpoints = endpoints_for(args, config)
    if not sys.stdout.isatty():
        raise OperatorError("the dashboard needs a terminal (stdout is not one)")
    asyncio.run(run_dashboard(config, endpoints))
    return 0


async def run_dashboard(config: VehicleConfig, endpoints: Endpoints,
                        stop: asyncio.Event | None = None) -> None:
    """Run the dashboard in the running event loop until the commander quits or `stop` is set."""
    # Textual is imported here so the other subcommands start without it.
    from ui.app import DashboardApp

    app = DashboardApp(config, endpoints=endpoints, stop=stop)
    with logs_into(app.state):
        await app.run_async()


async def run_demo_dashboard(sup: Supervisor, stop: asyncio.Event) -> None:
    """The non-headless `edge demo`: the dashboard on the demo's bus, beside its supervisor."""
    if not sys.stdout.isatty():
        print("edge demo: stdout is not a terminal, so no dashboard; Ctrl-C stops the demo",
              file=sys.stderr, flush=True)
        await stop.wait()
        return
    await run_dashboard(sup.config, sup.endpoints, stop)
    print("edge demo: stopping…", file=sys.stderr, flush=True)


@contextlib.contextmanager
def logs_into(state: DashboardState) -> Iterator[None]:
    """While the app owns the terminal, log lines would tear the screen: warnings and
    worse go to the dashboard's event log instead, and nothing goes to stderr."""
    root = logging.getLogger()
    saved = root.handlers[:]
    handler = _EventLogHandler(state)
    root.handlers[:] = [handler]
    try:
        yield
    finally:
        root.handlers[:] = saved


class _EventLogHandler(logging.Handler):
    def __init__(self, state: DashboardState) -> None:
        super().__init__(level=logging.WARNING)
        self.state = state

    def emit(self, record: logging.LogRecord) -> None:
        try:
            severity = "error" if record.levelno >= logging.ERROR else "warning"
            self.state.add_event(severity, record.name[:40], record.getMessage())
        except Exception:  # a log call must never raise into the code that logs
            self.handleError(record)
