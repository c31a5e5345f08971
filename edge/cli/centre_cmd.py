"""`edge centre --config centre.toml`: the city centre's site (probe responder, tunnels' far end,
and with ``[nats]`` the sourcing of every vehicle's stream and a watch on it).

Runs until SIGINT or SIGTERM. On stderr: what it serves, then a line each time a
vehicle's tunnel endpoint appears or changes (a roam to another WAN), and each time a
vehicle's leaf link comes or goes or its source stalls, is kicked or moves again
(:mod:`edge.centre.sync`). On stdout, at the end: one JSON line (probe counters, the
tunnel, every vehicle, and ``sync``: each vehicle's sync figures). A config problem, a
key that cannot be read or is not a key, or a listen address this machine does not have
is one line and exit 2; a tunnel that fails to start or dies, or a centre NATS that does
not answer, is one line and exit 1. Under systemd it says READY once serving and keeps
the watchdog fed.

Two more: ``edge centre nats --config centre.toml`` runs the centre's NATS server (its
own unit, edge-centre-nats.service) until stopped; ``edge centre keys NAME…`` makes nkey
pairs (``NAME.seed``, owner-only, and ``NAME.pub``) for ``[nats]`` and ``[sync]``.
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
    from edge.centre.page import CentrePage
    from edge.centre.site import CentreSite
    from edge.centre.sync import CentreSync
    from edge.config.centre_site import CentreSiteConfig
    from edge.runtime.sdnotify import Notifier
    from edge.sync.nats_server import ServerSpec

CONFIG_ENV = "EDGE_CENTRE_CONFIG"
DEFAULT_CONFIG = "/etc/edge/centre.toml"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "centre", help="the city centre's site: probe responder and the vehicles' tunnels",
        description="Runs at the city centre: answers every vehicle's link probes and, as "
                    "root (CAP_NET_ADMIN) with wireguard-go, is the far end of each "
                    "vehicle's WireGuard tunnel. Prints what it serves and each vehicle's "
                    "tunnel endpoint as it changes; with [nats], sources every vehicle's "
                    "stream and says when a source stalls. Ends on SIGTERM or Ctrl-C with a "
                    "JSON line. `edge centre nats` runs the centre's NATS server, `edge "
                    "centre keys` makes nkeys.")
    p.add_argument("--config", "-c", metavar="FILE",
                   default=os.environ.get(CONFIG_ENV, DEFAULT_CONFIG),
                   help=f"the centre's config (default: ${CONFIG_ENV} or {DEFAULT_CONFIG}; "
                        "see config/centre.example.toml)")
    p.set_defaults(func=cmd_centre)
    actions = p.add_subparsers(dest="centre_action", metavar="[nats | keys]", required=False)
    n = actions.add_parser(
        "nats", help="run the centre's NATS JetStream server ([nats] of the config)",
        description="Runs the centre's nats-server (JetStream domain centre, the "
                    "vehicles' leafnode port) as [nats] and [[vehicles]] say, until "
                    "SIGTERM or Ctrl-C; exits 1 with its last complaint if it dies.")
    n.add_argument("--config", "-c", metavar="FILE",
                   default=os.environ.get(CONFIG_ENV, DEFAULT_CONFIG),
                   help=f"the centre's config (default: ${CONFIG_ENV} or {DEFAULT_CONFIG})")
    n.set_defaults(func=cmd_centre_nats)
    k = actions.add_parser(
        "keys", help="make NATS nkey pairs: NAME.seed (secret) and NAME.pub",
        description="Writes NAME.seed (owner-only: the secret a [sync] leaf_seed / "
                    "client_seed or [nats] client_seed points at) and NAME.pub (the public "
                    "key a [[vehicles]] nats_key points at) for each NAME, and prints the "
                    "public keys. An existing file is never overwritten.")
    k.add_argument("names", nargs="+", metavar="NAME", help="e.g. cv-01-leaf centre-client")
    k.add_argument("--dir", "-d", default=".", metavar="DIR",
                   help="where to write them (default: here)")
    k.set_defaults(func=cmd_centre_keys)


def cmd_centre_keys(args: argparse.Namespace) -> int:
    import re

    from edge.cli import OperatorError
    from edge.sync.credentials import write_key_pair

    for name in args.names:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", name):
            raise OperatorError(f'"{name}" is not a key name (letters, digits, ".", "-", '
                                '"_"; it names the files)')
    for name in args.names:
        try:
            seed_path, pub_path, public = write_key_pair(Path(args.dir), name)
        except FileExistsError as e:
            raise OperatorError(str(e)) from None
        except OSError as e:
            raise OperatorError(f"cannot write {name}'s keys in {args.dir}: "
                                f"{e.strerror}") from None
        print(f"{name}: {public} (secret: {seed_path}, public: {pub_path})", flush=True)
    return 0


def cmd_centre_nats(args: argparse.Namespace) -> int:
    from edge.centre.nats import centre_nats_spec
    from edge.config.centre_site import CentreSiteConfig
    from edge.config.errors import ConfigError
    from edge.config.loader import load_as
    from edge.runtime.logs import setup_logging
    from edge.sync.nats_server import NatsServerError

    path = Path(args.config)
    config = load_as(CentreSiteConfig, path)
    if config.nats is None:
        raise ConfigError(str(path), ["nats: missing (the [nats] section says where the "
                                      "centre's NATS listens)"])
    spec = centre_nats_spec(config, path.resolve().parent)
    try:
        spec.check()
    except NatsServerError as e:
        raise ConfigError(str(path), [str(e)]) from None
    setup_logging("centre-nats")
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(_serve_nats(spec))
    return 130


async def _serve_nats(spec: ServerSpec) -> int:
    from edge.runtime.sdnotify import Notifier, watchdog_interval_s
    from edge.sync.nats_server import NatsServer, NatsServerError

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    server = NatsServer(spec, spec.store_dir / "nats-server.conf")
    try:
        await server.start()
    except NatsServerError as e:
        print(f"edge: centre nats: {e}", file=sys.stderr, flush=True)
        return 1
    notifier = Notifier()
    leaf = f"{spec.leaf_host or spec.host}:{spec.leaf_listen_port}"
    line = (f"NATS {spec.url} (JetStream domain {spec.domain}), vehicles' leaf port {leaf}, "
            f"{'nkeys' if spec.client_keys else 'no keys (loopback only)'}")
    _say(line)
    notifier.ready(line)
    helpers: list[asyncio.Task[Any]] = []
    if (every := watchdog_interval_s()) is not None:
        helpers.append(asyncio.create_task(_watchdog(notifier, every), name="watchdog"))
    exited = asyncio.create_task(server.wait(), name="nats-server")
    stopping = asyncio.create_task(stop.wait(), name="stop-signal")
    helpers += [exited, stopping]
    code = 0
    try:
        await asyncio.wait({exited, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if exited.done():
            print(f"edge: centre nats: nats-server exited ({exited.result()}): "
                  f"{server.last_error()}", file=sys.stderr, flush=True)
            code = 1
    finally:
        notifier.stopping()
        for task in helpers:
            task.cancel()
        for task in helpers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await server.stop()
        notifier.close()
    return code


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
    from edge.runtime.tasks import cancel_and_wait

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
    starting = asyncio.create_task(_start_sync(config, config_dir), name="start-sync")
    stopped = asyncio.create_task(stop.wait(), name="stop-signal")
    await asyncio.wait({starting, stopped}, return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()
    if not starting.done():  # stopped while the centre's NATS was still being reached
        await cancel_and_wait([starting])
        await site.close()
        return 0
    try:
        sync = starting.result()  # a ConfigError goes up to the CLI: one line, exit 2
    except BaseException:
        await site.close()
        raise
    if isinstance(sync, str):
        await site.close()
        print(f"edge: centre: {sync}", file=sys.stderr, flush=True)
        return 1
    try:
        page = await _start_page(config, config_dir)  # a ConfigError: one line, exit 2
    except BaseException:
        await site.close()
        if sync is not None:
            await sync.close()
        raise
    notifier = Notifier()
    helpers: list[asyncio.Task[Any]] = []
    code = 0
    try:
        for line in site.describe():
            _say(line)
        if sync is not None:
            _say(f"sourcing {len(sync.vehicle_ids)} vehicle(s) on {sync.config.url}")
            helpers.append(asyncio.create_task(sync.run(), name="watch-sources"))
        if page is not None:
            _say(f"centre page on {page.url}")
        notifier.ready(_status_text(site, sync))
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
        await cancel_and_wait(helpers)
        status = await site.status()
        if page is not None:
            await page.close()
        await site.close()
        if sync is not None:
            status["sync"] = sync.status()
            await sync.close()
        notifier.close()
    print(json.dumps(status), flush=True)
    return code


async def _start_sync(config: CentreSiteConfig, config_dir: Path) -> CentreSync | str | None:
    """The sourcing and its watch with [nats] (None without); a str says why it cannot."""
    from edge.centre.sync import CentreSync, CentreSyncError

    if config.nats is None:
        return None
    sync = CentreSync(config.nats, [v.id for v in config.vehicles], config_dir, on_line=_say)
    try:
        await sync.start()  # a ConfigError (an unreadable seed) goes up: exit 2
    except CentreSyncError as e:
        await sync.close()
        return str(e)
    except BaseException:  # cancelled by a stop, or the ConfigError
        await sync.close()
        raise
    return sync


async def _start_page(config: CentreSiteConfig, config_dir: Path) -> CentrePage | None:
    """The centre page with an enabled [page] (the config has made sure of [nats])."""
    from edge.centre.page import CentrePage
    from edge.sync.credentials import read_seed

    if config.page is None or not config.page.enabled or config.nats is None:
        return None
    nats = config.nats
    seed = (None if nats.client_seed is None else
            read_seed(nats.client_seed, config_dir, "nats.client_seed"))
    page = CentrePage.from_config(config.page, config.vehicles, nats.url, config_dir,
                                  nats_options={"nkeys_seed_str": seed} if seed else None)
    await page.start()
    return page


def _status_text(site: CentreSite, sync: CentreSync | None = None) -> str:
    host, port = site.responder.address
    tunnel = "no tunnel" if site.tunnel is None else f"tunnel {site.tunnel.ifname} up"
    sourcing = "" if sync is None else f"; sourcing {len(sync.vehicle_ids)} vehicle(s)"
    return (f"answering probes on {host}:{port}; {tunnel}; {len(site.vehicles)} "
            f"vehicle(s){sourcing}")


async def _watchdog(notifier: Notifier, every_s: float) -> None:
    # Fed from the event loop: a loop that stalls stops feeding it, and systemd restarts us.
    while True:
        notifier.watchdog()
        await asyncio.sleep(every_s)
