"""`edge demo`: the whole vehicle on simulated devices, on this machine."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import signal
import sys
import tempfile
from pathlib import Path

from edge.cli.common import load
from edge.runtime.logs import setup_logging
from edge.runtime.supervisor import Supervisor

STATUS_EVERY_S = 2.0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("demo", help="run the whole vehicle on simulated devices")
    p.add_argument("--config", "-c", default="config/demo.toml", metavar="FILE",
                   help="vehicle config with a [demo] section (default: config/demo.toml)")
    p.add_argument("--headless", action="store_true",
                   help="no terminal UI; print a JSON summary as the last line")
    p.add_argument("--seconds", type=float, default=0,
                   help="stop after N seconds (default: run until Ctrl-C)")
    p.add_argument("--keep", action="store_true", help="keep the runtime dir (logs) afterwards")
    p.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    config, path = load(args)
    setup_logging("demo", force_json=False)
    runtime_dir = Path(tempfile.mkdtemp(prefix="edge-demo-"))
    sup = Supervisor(config, path.resolve(), runtime_dir)

    async def main() -> int:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        print(f"edge demo: {len(sup.children)} processes; bus and logs in {runtime_dir}\n"
              f"  watch it: edge bus tail --bus {runtime_dir} --config {path}", file=sys.stderr)
        await sup.start()
        try:
            if args.seconds:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), args.seconds)
            elif args.headless:
                await stop.wait()
            else:
                await live_status(sup, stop)
        finally:
            await sup.stop()
        print(json.dumps(sup.summary()), flush=True)
        return 0

    try:
        return asyncio.run(main())
    finally:
        if not args.keep:
            shutil.rmtree(runtime_dir, ignore_errors=True)


async def live_status(sup: Supervisor, stop: asyncio.Event) -> None:
    """A plain status table until the dashboard takes this place."""
    tty = sys.stdout.isatty()
    while not stop.is_set():
        if tty:
            print("\x1b[H\x1b[2J", end="")
        print("\n".join(sup.status_lines()), flush=True)
        print("Ctrl-C stops the demo.", flush=True)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), STATUS_EVERY_S)
