"""`edge bus tail [PREFIX]`: watch bus traffic, decoded, one line a message."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from typing import TYPE_CHECKING, Any

from edge.cli.common import add_bus_arg, add_config_arg, endpoints_for, load

if TYPE_CHECKING:  # every `edge` process imports this module; only `bus tail` needs these
    from edge.bus.envelope import Envelope


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("bus", help="control-bus tools")
    bsub = p.add_subparsers(dest="bus_command", metavar="ACTION", required=True)
    t = bsub.add_parser("tail", help="print bus traffic as it flows")
    t.add_argument("prefix", nargs="?", default="", metavar="TOPIC-PREFIX",
                   help="only topics starting with this (e.g. cam/ or drone/alpha/)")
    t.add_argument("--count", type=int, default=0, help="stop after N messages")
    t.add_argument("--seconds", type=float, default=0, help="stop after N seconds")
    t.add_argument("--json", action="store_true", help="one JSON object a line")
    add_config_arg(t)
    add_bus_arg(t)
    t.set_defaults(func=cmd_tail)


def _short(value: Any) -> Any:
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    if isinstance(value, float):
        return round(value, 3)
    if isinstance(value, dict):
        return {k: _short(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_short(v) for v in value]
    return value


def format_line(env: Envelope) -> str:
    h = env.header
    t = time.strftime("%H:%M:%S", time.localtime(h.ts_ns / 1e9))
    t += f".{h.ts_ns // 1_000_000 % 1000:03d}"
    body = json.dumps(_short(env.body), separators=(",", ":"), default=str)
    extra = f" +{len(env.blobs)} blob(s) {sum(map(len, env.blobs))} B" if env.blobs else ""
    gap = f" (missed {env.gap})" if env.gap else ""
    return f"{t} {env.topic} {h.type} {h.source}#{h.seq}{gap} {body}{extra}"


def cmd_tail(args: argparse.Namespace) -> int:
    from edge.bus.client import BusClient

    config, _ = load(args)
    endpoints = endpoints_for(args, config)

    async def main() -> None:
        bus = BusClient(endpoints, source="cli-tail")
        sub = bus.subscribe(args.prefix, raw=True)
        n = 0
        deadline = time.monotonic() + args.seconds if args.seconds else None
        try:
            while True:
                timeout = None if deadline is None else deadline - time.monotonic()
                if timeout is not None and timeout <= 0:
                    break
                try:
                    async with asyncio.timeout(timeout):
                        env = await sub.recv()
                except TimeoutError:
                    break
                if args.json:
                    line = json.dumps({"topic": env.topic, "type": env.header.type,
                                       "src": env.header.source, "seq": env.header.seq,
                                       "ts": env.header.ts_ns, "body": _short(env.body)},
                                      default=str)
                else:
                    line = format_line(env)
                print(line, flush=True)
                n += 1
                if args.count and n >= args.count:
                    break
        finally:
            await bus.close()
            if bus.stats.malformed:
                print(f"malformed messages dropped: {dict(bus.stats.malformed)}", file=sys.stderr)

    with contextlib.suppress(KeyboardInterrupt, BrokenPipeError):
        asyncio.run(main())
    return 0
