"""`edge bench ...`: measurements against a baseline run in the same command."""

from __future__ import annotations

import argparse
import importlib

# Each module adds one `edge bench NAME` with its own register().
BENCH_MODULES = ("edge.bench.bus", "edge.bench.mavlink", "edge.bench.ingest",
                 "edge.bench.latency", "edge.bench.record", "edge.bench.replay",
                 "edge.bench.failover", "edge.bench.sync")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("bench", help="benchmarks: a table, then one JSON line")
    bsub = p.add_subparsers(dest="bench", metavar="BENCH", required=True)
    for name in BENCH_MODULES:
        importlib.import_module(name).register(bsub)
