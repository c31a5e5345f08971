"""`edge run SERVICE`: host one service in this process (what systemd units call)."""

from __future__ import annotations

import argparse
import asyncio
import logging

from edge.cli.common import add_bus_arg, add_config_arg, endpoints_for, load
from edge.services import SERVICES, split_name


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    lines = "\n".join(f"  {s.kind}{'@ID' if s.instances else ''}: {s.summary}"
                      for s in SERVICES.values())
    p = sub.add_parser("run", help="run one service (bus, camera@ID, ...)",
                       description=f"Run one service in the foreground.\n\nservices:\n{lines}",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("service", metavar="SERVICE", help="e.g. bus or camera@north-gate")
    add_config_arg(p)
    add_bus_arg(p)
    p.set_defaults(func=cmd_run)


def cmd_run(args: argparse.Namespace) -> int:
    # Here, not at the top: every `edge` process registers this command.
    from edge.bus.client import BusClient
    from edge.cli import OperatorError
    from edge.runtime.logs import setup_logging
    from edge.runtime.service import ServiceContext, host

    kind, instance = split_name(args.service)
    spec = SERVICES.get(kind)
    if spec is None:
        raise OperatorError(f'no service "{kind}"; known: {", ".join(SERVICES)}')
    config, path = load(args)
    if spec.instances is not None:
        known = spec.instances(config)
        if instance not in known:
            raise OperatorError(
                f'{kind}@{instance or "?"}: {path} defines no {kind} "{instance or ""}"; '
                f'known: {", ".join(known) or "none"}')
    elif instance:
        raise OperatorError(f"{kind} takes no @instance")
    setup_logging(args.service)
    endpoints = endpoints_for(args, config)
    service_cls = spec.load()

    async def main() -> int:
        bus = BusClient(endpoints, source=args.service)
        ctx = ServiceContext(name=args.service, instance=instance, config=config,
                             config_path=path, endpoints=endpoints, bus=bus,
                             log=logging.getLogger(args.service))
        return await host(service_cls, ctx)

    return asyncio.run(main())
