"""`edge centre --config centre.toml`: the city centre's site (probe responder, tunnels' far end).

Runs until SIGINT or SIGTERM. On stderr: what it serves, then a line each time a
vehicle's tunnel endpoint appears or changes (a roam to another WAN). On stdout, at
the end: one JSON line (probe counters, the tunnel, every vehicle). A config problem,
a key that cannot be read or is not a key, or a listen address this machine does not
have is one line and exit 2; a tunnel that fails to start or dies is one line and
exit 1. Under systemd it says READY once serving and keeps the watchdog fed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edge.centre.site import CentreSite
    from edge.config.centre_site import CentreSiteConfig
    from edge.runtime.sdnotify import Notifier

CONFIG_ENV = "EDGE_CENTRE_CONFIG"
DEFAULT_CONFIG = "/etc/edge/centre.toml"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "centre", help="the city centre's site: probe responder and the vehicles' tunnels",
        description="Runs at the city centre: answers every vehicle's link probes and, as "
                    "root (CAP_NET_ADMIN) with wireguard-go, is the far end of each "
                    "vehicle's WireGuard tunnel. Prints what it serves and each vehicle's "
                    "tunnel endpoint as it changes; ends on SIGTERM or Ctrl-C with a JSON "
                    "line.")
    p.add_argument("--config", "-c", metavar="FILE",
                   default=os.environ.get(CONFIG_ENV, DEFAULT_CONFIG),
                   help=f"the centre's config (default: ${CONFIG_ENV} or {DEFAULT_CONFIG}; "
                        "see config/centre.example.toml)")
    p.set_defaults(func=cmd_centre)


def cmd_centre(args: argparse.Namespace) -> int:
    from edge.config.centre_site import CentreSiteConfig
    from edge.config.loader import load_as
    from edge.runtime.logs import setup_logging

    path = Path(args.config)
    config = load_as(CentreSiteConfig, path)  # a ConfigError is one line a problem, exit 2
    setup_logging("centre")
    # A Ctrl-C before the handlers are installed is still a clean stop.
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(_serve(config, path, path.resolve().parent))
    return 130


def _say(line: str) -> None:
    print(f"edge centre: {line}", file=sys.stderr, flush=True)


def _on_endpoint(vehicle: str, endpoint: tuple[str, int],
                 previous: tuple[str, int] | None) -> None:
    from edge.links.wireguard_uapi import endpoint_text

    was = f" (was {endpoint_text(*previous)})" if previous is not None else ""
    _say(f"vehicle {vehicle} now at {endpoint_text(*endpoint)}{was}")


async def _serve(config: CentreSiteConfig, path: Path, config_dir: Path) -> int:
    from edge.centre.site import CentreSite, CentreSiteError
    from edge.runtime.sdnotify import Notifier, watchdog_interval_s

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    site = CentreSite(config, config_dir, source=path, on_endpoint=_on_endpoint)
    try:
        await site.start()  # a ConfigError goes up to the CLI: one line, exit 2
    except CentreSiteError as e:
        print(f"edge: centre: {e}", file=sys.stderr, flush=True)
        return 1
    notifier = Notifier()
    helpers: list[asyncio.Task[Any]] = []
    code = 0
    try:
        for line in site.describe():
            _say(line)
        notifier.ready(_status_text(site))
        if (every := watchdog_interval_s()) is not None:
            helpers.append(asyncio.create_task(_watchdog(notifier, every), name="watchdog"))
        following = asyncio.create_task(site.run(), name="follow-vehicles")
        stopping = asyncio.create_task(stop.wait(), name="stop-signal")
        helpers += [following, stopping]
        await asyncio.wait({following, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if following.done() and (error := following.exception()) is not None:
            if not isinstance(error, CentreSiteError):
                raise error
            print(f"edge: centre: {error}", file=sys.stderr, flush=True)
            code = 1
    finally:
        notifier.stopping()
        for task in helpers:
            task.cancel()
        for task in helpers:
            with contextlib.suppress(asyncio.CancelledError, CentreSiteError):
                await task
        status = await site.status()
        await site.close()
        notifier.close()
    print(json.dumps(status), flush=True)
    return code


def _status_text(site: CentreSite) -> str:
    host, port = site.responder.address
    tunnel = "no tunnel" if site.tunnel is None else f"tunnel {site.tunnel.ifname} up"
    return f"answering probes on {host}:{port}; {tunnel}; {len(site.vehicles)} vehicle(s)"


async def _watchdog(notifier: Notifier, every_s: float) -> None:
    # Fed from the event loop: a loop that stalls stops feeding it, and systemd restarts us.
    while True:
        notifier.watchdog()
        await asyncio.sleep(every_s)
