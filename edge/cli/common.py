"""Arguments and helpers several subcommands share."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # loaded by the commands that read a config, not by every `edge` process
    from edge.bus.endpoints import Endpoints
    from edge.config import VehicleConfig

CONFIG_ENV = "EDGE_CONFIG"
DEFAULT_CONFIG = "/etc/edge/vehicle.toml"


def add_config_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", "-c", metavar="FILE",
        default=os.environ.get(CONFIG_ENV, DEFAULT_CONFIG),
        help=f"vehicle config (default: ${CONFIG_ENV} or {DEFAULT_CONFIG})")


def load(args: argparse.Namespace) -> tuple[VehicleConfig, Path]:
    from edge.config import load_config

    path = Path(args.config)
    return load_config(path), path


def endpoints_for(args: argparse.Namespace, config: VehicleConfig) -> Endpoints:
    """Endpoints from config, or a runtime dir given on the command line (`--bus DIR`)."""
    from edge.bus.endpoints import Endpoints

    bus_dir = getattr(args, "bus", None)
    return Endpoints.from_config(config.bus, Path(bus_dir) if bus_dir else None)


def add_bus_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--bus", metavar="DIR",
        help="runtime dir of a running vehicle's bus (e.g. the one `edge demo` prints)")
