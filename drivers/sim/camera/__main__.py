"""``python -m drivers.sim.camera``: run one simulated camera in the foreground."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging

from drivers.sim.camera.server import run_sim_camera


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m drivers.sim.camera", description=__doc__)
    parser.add_argument("--name", default="cam1")
    parser.add_argument("--port", type=int, default=8554)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--user")
    parser.add_argument("--password")
    parser.add_argument("--auth", choices=("digest", "basic"), default="digest")
    parser.add_argument("--codec", choices=("h264", "h265"), default="h264")
    parser.add_argument("--profile", choices=("baseline", "main", "high"), default="baseline")
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--gop", type=int, default=30)
    parser.add_argument(
        "--live", action="store_true", help="encode in real time (latency benchmarks)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(
            run_sim_camera(
                args.name,
                args.port,
                args.host,
                user=args.user,
                password=args.password,
                auth=args.auth,
                codec=args.codec,
                profile=args.profile,
                fps=args.fps,
                gop=args.gop,
                live=args.live,
            )
        )


if __name__ == "__main__":
    main()
