"""The `edge` command. Each subcommand lives in its own module with a `register()`."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# Modules that add subcommands, in the order `edge --help` lists them.
COMMAND_MODULES = (
    "edge.cli.run",
    "edge.cli.demo",
    "edge.cli.dashboard",
    "edge.cli.config_cmd",
    "edge.cli.bus_cmd",
    "edge.cli.camera_cmd",
    "edge.cli.bench",
    "edge.cli.drone_cmd",
    "edge.cli.record_cmd",
    "edge.cli.export_cmd",
    "edge.cli.replay_cmd",
    "edge.cli.sim",
    "edge.cli.centre_cmd",
)


class OperatorError(Exception):
    """A failure to report as one plain line (exit 1), never as a traceback."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edge", description="Onboard software for the mobile command vehicle.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    words = sys.argv[1:] if argv is None else argv
    if words[:1] == ["run"] and len(words) > 1 and "asyncio" not in sys.modules:
        from edge.services import SERVICES, split_name  # a table: imports nothing heavy

        spec = SERVICES.get(split_name(words[1])[0])
        if spec is not None and not spec.tls:
            # Before the parser's modules import asyncio, which loads OpenSSL for its TLS
            # transports: 4 of the broker's 42 MB (issue 17). Such a service never speaks
            # TLS (the broker's tcp endpoints are CURVE, libzmq's own); a later
            # `import ssl` would fail.
            sys.modules["ssl"] = None  # type: ignore[assignment]
    args = build_parser().parse_args(argv)
    # Here, not at the top: `edge --help` and a mistyped command need no config schema.
    from edge.config import ConfigError

    try:
        code: int = args.func(args)
        return code
    except ConfigError as e:
        print(e, file=sys.stderr)
        return 2
    except OperatorError as e:
        print(f"edge: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as e:
        if os.environ.get("EDGE_DEBUG"):
            raise
        print(f"edge: {type(e).__name__}: {e} (set EDGE_DEBUG=1 for a traceback)",
              file=sys.stderr)
        return 1
