"""`edge config check FILE`: validate a vehicle config."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("config", help="vehicle config tools")
    csub = p.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    c = csub.add_parser("check", help="validate a config file: exit 0, or 2 naming each problem")
    c.add_argument("file", metavar="FILE")
    c.set_defaults(func=cmd_check)


def cmd_check(args: argparse.Namespace) -> int:
    from edge.config import load_config  # here: every `edge` process imports this module

    cfg = load_config(args.file)  # ConfigError → exit 2 with one line per problem
    print(f"{args.file}: ok ({len(cfg.cameras)} cameras, {len(cfg.drones)} drone links, "
          f"{len(cfg.links)} WAN links)")
    return 0
