"""``python -m drivers.sim.drone --connection tcp:127.0.0.1:5760 --home LAT,LON``.

The ``edge sim drone`` command wraps the same function; this entry point
exists so the simulator can be run before the CLI is installed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging

from drivers.sim.drone.server import DEFAULT_HOME, run_sim_drone


def _home(text: str) -> tuple[float, float]:
    lat, _, lon = text.partition(",")
    try:
        return float(lat), float(lon)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LAT,LON, got {text!r}") from None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m drivers.sim.drone", description=__doc__)
    parser.add_argument(
        "--connection", default="tcp:127.0.0.1:5760", help="tcp:HOST:PORT listens (default)"
    )
    parser.add_argument("--home", type=_home, default=DEFAULT_HOME, help="LAT,LON")
    parser.add_argument("--sysid", type=int, default=1)
    parser.add_argument("--camera-rtsp-url", default=None)
    parser.add_argument("--garbage", action="store_true", help="interleave line noise")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(
            run_sim_drone(
                args.connection,
                sysid=args.sysid,
                home=args.home,
                camera_rtsp_url=args.camera_rtsp_url,
                garbage=args.garbage,
            )
        )


if __name__ == "__main__":
    main()
