"""`edge demo`: the whole vehicle on simulated devices, on this machine."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
import tomllib
from pathlib import Path


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("demo", help="run the whole vehicle on simulated devices")
    p.add_argument("--config", "-c", default="config/demo.toml", metavar="FILE",
                   help="vehicle config with a [demo] section (default: config/demo.toml)")
    p.add_argument("--headless", action="store_true",
                   help="no terminal UI; print a JSON summary as the last line")
    p.add_argument("--seconds", type=float, default=0,
                   help="stop after N seconds (default: run until Ctrl-C)")
    p.add_argument("--keep", action="store_true", help="keep the runtime dir (logs) afterwards")
    p.add_argument("--sync", action="store_true",
                   help="also sync to a local centre: the vehicle's NATS and bridge, the "
                        "centre's NATS and `edge centre` sourcing it")
    p.set_defaults(func=cmd_demo)


def runtime_copy(config_path: Path, runtime_dir: Path) -> Path:
    """`config_path` as `runtime_dir/vehicle.toml`, its relative secret paths made absolute."""
    from edge.cli.demo_config import toml_text, with_absolute_paths

    data = with_absolute_paths(tomllib.loads(config_path.read_text()),
                               config_path.resolve().parent)
    copy = runtime_dir / "vehicle.toml"
    copy.write_text(toml_text(data))
    return copy


def cmd_demo(args: argparse.Namespace) -> int:
    # Imported here: every `edge` process builds the parser that registers this command.
    from edge.cli.common import load
    from edge.cli.dashboard import run_demo_dashboard
    from edge.cli.demo_links import DemoLinks
    from edge.config import load_config
    from edge.recorder.layout import RECORDINGS_DIR_ENV
    from edge.runtime.logs import setup_logging
    from edge.runtime.supervisor import Supervisor, plan

    config, path = load(args)
    setup_logging("demo", force_json=False)
    runtime_dir = Path(tempfile.mkdtemp(prefix="edge-demo-"))
    # Children inherit it: the demo's recordings live and go with its runtime dir.
    os.environ[RECORDINGS_DIR_ENV] = str(runtime_dir / "recordings")

    async def main() -> int:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        # Built before the services start (about 0.1 s): their config names its links.
        links = await DemoLinks.start(config, path.resolve(), runtime_dir)
        try:
            vehicle, vehicle_path = links.config, links.config_path
            if not vehicle_path.is_relative_to(runtime_dir):
                plan(vehicle, vehicle_path)  # its mistakes named in the operator's file
                # The services get a copy: what they write to their config (a GB/T 28181
                # channel adopted as a camera) stays with this demo, not in the checkout.
                vehicle_path = runtime_copy(vehicle_path, runtime_dir)
                vehicle = load_config(vehicle_path)
            sync = None
            if args.sync:
                from edge.cli.demo_sync import DemoSync

                sync = DemoSync.prepare(vehicle_path, runtime_dir)
                vehicle, vehicle_path = sync.config, sync.config_path
            sup = Supervisor(vehicle, vehicle_path, runtime_dir, prefixes=links.prefixes)
            links.add_children(sup)
            if sync is not None:
                sync.add_children(sup)
            print(f"edge demo: {len(sup.children)} processes; bus, recordings and logs in "
                  f"{runtime_dir}\n"
                  f"  watch it: edge bus tail --bus {runtime_dir} --config {path}",
                  file=sys.stderr)
            for note in [*links.notes(sup), *(sync.notes() if sync is not None else [])]:
                print(f"edge demo: {note}", file=sys.stderr)
            await sup.start()
            try:
                if args.seconds:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), args.seconds)
                elif args.headless:
                    await stop.wait()
                else:
                    await run_demo_dashboard(sup, stop)
            finally:
                await sup.stop()
        finally:
            links.close()  # after the supervisor: its children in the namespaces are gone
        summary = sup.summary()
        summary["links"] = links.summary()
        print(json.dumps(summary), flush=True)
        return 0

    try:
        return asyncio.run(main())
    finally:
        if not args.keep:
            shutil.rmtree(runtime_dir, ignore_errors=True)
