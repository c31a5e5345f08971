"""`edge demo --sync`: the vehicle's sync to a local centre, on this machine.

The demo's vehicle config gets a ``[sync]`` (enabled, the vehicle's NATS on a free
loopback port, its leaf link to the local centre, nkeys made for the run), so the
supervisor runs the ``nats`` and ``sync`` services like every other; beside them, as
supervised children, the centre's NATS (``edge centre nats``) and ``edge centre``
sourcing the demo vehicle's stream and watching it. Everything (keys, configs, both
JetStream stores) lives in the demo's runtime dir under ``sync/`` and goes with it.

Opt-in: the default demo (and every test built on it) runs no NATS at all.
"""

from __future__ import annotations

import socket
import tomllib
from pathlib import Path
from typing import Any

from edge.cli.demo_config import toml_text, with_absolute_paths
from edge.config import VehicleConfig
from edge.config.loader import load_config
from edge.runtime.supervisor import Child, Supervisor, edge_argv
from edge.sync.credentials import write_key_pair

SYNC_DIR = "sync"
CENTRE_NATS_CHILD = "centre-nats"
CENTRE_SYNC_CHILD = "centre-sync"
PAGE_PORT = 8900  # the centre page, beside the vehicle's viewer page on 8800


def _port_or_free(port: int) -> int:
    """`port` on 127.0.0.1 when nothing listens there (a second demo: any free one)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return _free_port()
    return port


def _free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class DemoSync:
    """The demo's sync configs; :meth:`add_children` puts the centre's two processes in."""

    def __init__(self, config: VehicleConfig, config_path: Path, centre_config: Path,
                 centre_url: str) -> None:
        #: the vehicle config the services run with (the demo's, with a [sync]), its file
        self.config = config
        self.config_path = config_path
        self.centre_config = centre_config
        self.centre_url = centre_url

    @classmethod
    def prepare(cls, config_path: Path, runtime_dir: Path) -> DemoSync:
        """Keys, the vehicle's config with [sync] and the centre's config, in the runtime
        dir. `config_path` is the vehicle config the demo runs (perhaps already one the
        demo generated)."""
        folder = runtime_dir / SYNC_DIR
        folder.mkdir(mode=0o700, exist_ok=True)
        keys = {name: write_key_pair(folder, name)[:2]
                for name in ("vehicle-client", "vehicle-leaf", "centre-client")}
        data: dict[str, Any] = with_absolute_paths(
            tomllib.loads(config_path.read_text()), config_path.resolve().parent)
        leaf_port = _free_port()
        data["sync"] = {
            **data.get("sync", {}), "enabled": True,
            "nats_url": f"nats://127.0.0.1:{_free_port()}",
            "nats_monitor_port": _free_port(),
            "centre_leaf_url": f"nats-leaf://127.0.0.1:{leaf_port}",
            "client_seed": {"file": str(keys["vehicle-client"][0])},
            "leaf_seed": {"file": str(keys["vehicle-leaf"][0])},
            "store_dir": str(folder / "vehicle-nats")}
        vehicle_path = folder / "vehicle.toml"
        vehicle_path.write_text(toml_text(data))
        vehicle = load_config(vehicle_path)
        centre_port = _free_port()
        entry: dict[str, Any] = {"id": vehicle.vehicle,
                                 "nats_key": {"file": str(keys["vehicle-leaf"][1])}}
        centre: dict[str, Any] = {
            "centre": "demo-centre", "listen": "127.0.0.1",
            "probe_port": _free_port(socket.SOCK_DGRAM),
            "nats": {"port": centre_port, "monitor_port": _free_port(),
                     "leaf_port": leaf_port, "store_dir": str(folder / "centre-nats"),
                     "client_seed": {"file": str(keys["centre-client"][0])},
                     "stall_after_s": 3.0},
            "vehicles": [entry]}
        uplink = vehicle.uplink
        if uplink.enabled and uplink.token is not None and uplink.token.file is not None:
            # The centre page, with the demo's one token (the uplink's): the vehicle's
            # cameras play through it (roll-call) as a real centre's would.
            token = {"file": str(Path(uplink.token.file))}
            host, _, port = uplink.listen.rpartition(":")
            host = "127.0.0.1" if host in ("0.0.0.0", "") else host.strip("[]")
            centre["page"] = {"listen": f"127.0.0.1:{_port_or_free(PAGE_PORT)}",
                              "token": token}
            entry |= {"uplink_url": f"http://{host}:{port}", "uplink_token": token}
        centre_path = folder / "centre.toml"
        centre_path.write_text(toml_text(centre))
        return cls(vehicle, vehicle_path, centre_path, f"nats://127.0.0.1:{centre_port}")

    def add_children(self, sup: Supervisor) -> None:
        """The centre's NATS and `edge centre`, started after the broker (and stopped after
        the services): like simulators, restarted if they die."""
        at = 1 if sup.children[:1] and sup.children[0].name == "bus" else 0
        sup.children[at:at] = [
            Child(CENTRE_NATS_CHILD, edge_argv("centre", "nats", "--config",
                                               str(self.centre_config)), "simulator"),
            Child(CENTRE_SYNC_CHILD, edge_argv("centre", "--config", str(self.centre_config)),
                  "simulator")]

    def notes(self) -> list[str]:
        notes = [f"sync: the vehicle's NATS {self.config.sync.nats_url} links to a local "
                 f"centre NATS {self.centre_url}; edge centre sources stream "
                 f"VEHICLE_{self.config.vehicle} (log: {CENTRE_SYNC_CHILD}.log)"]
        page = tomllib.loads(self.centre_config.read_text()).get("page")
        if page is not None:
            notes.append(f"the centre page: http://{page['listen']}/ (the same token as "
                         "the viewer page)")
        return notes
