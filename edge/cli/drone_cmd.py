"""`edge drone probe CONNECTION`: which vehicles are on this MAVLink link?

Read-only: besides our ground-station HEARTBEAT it only asks for the usual
telemetry rates (see :mod:`drivers.mavlink.probe`); no commands, no camera
requests. Prints a table, then one JSON line (the last line) for scripts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

PROBE_FIELDS = ("sysid", "autopilot", "type", "mode", "armed", "lat", "lon", "alt_rel_m",
                "battery_pct", "msgs_per_s")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("drone", help="MAVLink drone tools")
    dsub = p.add_subparsers(dest="drone_command", metavar="ACTION", required=True)
    pr = dsub.add_parser(
        "probe", help="list the vehicles heard on a MAVLink connection (read-only)",
        description="Listen on a MAVLink connection and list every vehicle heard. "
                    "The last line of output is JSON.")
    pr.add_argument("connection", metavar="CONNECTION",
                    help="udpin:HOST:PORT, udpout:HOST:PORT, tcp:HOST:PORT or serial:/dev/X:BAUD")
    pr.add_argument("--seconds", type=float, default=3.0,
                    help="how long to listen (default: 3)")
    pr.add_argument("--source-system", type=int, default=255, metavar="SYSID",
                    help="our ground-station system id (default: 255)")
    pr.set_defaults(func=cmd_probe)


def _cell(value: Any, digits: int | None = None) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if digits is not None and isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def format_table(rows: list[dict[str, Any]]) -> list[str]:
    lines = [f"{'SYSID':>5}  {'AUTOPILOT':14} {'TYPE':12} {'MODE':10} {'ARMED':5} "
             f"{'LAT':>11} {'LON':>12} {'ALT m':>7} {'BATT %':>6} {'MSG/S':>6}"]
    for r in rows:
        lines.append(
            f"{r['sysid']:>5}  {_cell(r['autopilot']):14} {_cell(r['type']):12} "
            f"{_cell(r['mode']):10} {_cell(r['armed']):5} {_cell(r['lat'], 6):>11} "
            f"{_cell(r['lon'], 6):>12} {_cell(r['alt_rel_m'], 1):>7} "
            f"{_cell(r['battery_pct'], 0):>6} {_cell(r['msgs_per_s'], 1):>6}")
    return lines


def cmd_probe(args: argparse.Namespace) -> int:
    from drivers.mavlink import probe
    from drivers.mavlink.transport import parse_connection
    from edge.cli import OperatorError

    if not args.seconds > 0:
        raise OperatorError("--seconds must be more than 0")
    if not 1 <= args.source_system <= 255:
        raise OperatorError("--source-system must be 1..255")
    try:
        parse_connection(args.connection)
    except ValueError as e:
        raise OperatorError(str(e)) from None
    try:
        vehicles = asyncio.run(probe(args.connection, args.seconds,
                                     source_system=args.source_system))
    except OSError as e:
        raise OperatorError(f"cannot open {args.connection}: {e.strerror or e}") from None
    if not vehicles:
        raise OperatorError(f"no vehicle heard on {args.connection} in {args.seconds:g} s")
    rows = [{k: v.to_dict()[k] for k in PROBE_FIELDS} for v in vehicles]
    for line in format_table(rows):
        print(line)
    print(json.dumps({"vehicles": rows}), flush=True)
    sys.stdout.flush()
    return 0
