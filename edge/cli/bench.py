"""`edge bench ...`: measurements against a baseline run in the same command."""

from __future__ import annotations

import argparse
import importlib
from typing import Any

# Each module adds one `edge bench NAME` with its own register().
BENCH_MODULES = ("edge.bench.bus", "edge.bench.mavlink", "edge.bench.ingest",
                 "edge.bench.latency", "edge.bench.record", "edge.bench.replay",
                 "edge.bench.failover", "edge.bench.sync", "edge.bench.startup",
                 "edge.bench.demo_start")
HELP = "benchmarks: a table, then one JSON line"


class _BenchHelp(argparse.Action):
    """`edge bench --help`: the help of the full bench parser, built only now."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        bench_parser().print_help()
        parser.exit()


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    # The bench modules import aiortc, PyAV, numpy, OpenCV and nats at their top, and every
    # `edge` process (each service too) builds this parser: so they are imported only when
    # `edge bench` runs, which parses the rest of its command line itself.
    p = sub.add_parser("bench", help=HELP, add_help=False)
    p.add_argument("-h", "--help", action=_BenchHelp, nargs=0,
                   help="show this help message and exit")
    p.add_argument("bench_argv", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_bench)


def bench_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edge bench")
    bsub = p.add_subparsers(dest="bench", metavar="BENCH", required=True)
    for name in BENCH_MODULES:
        importlib.import_module(name).register(bsub)
    return p


def cmd_bench(args: argparse.Namespace) -> int:
    bench_args = bench_parser().parse_args(args.bench_argv)
    code: int = bench_args.func(bench_args)
    return code
