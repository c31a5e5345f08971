"""The vehicle's NATS server as ``[sync]`` says: its spec, and the bridge's credentials.

The server listens where ``nats_url`` points (the bridge's URL is the server's address),
admits the public key of ``client_seed`` when one is given, and links to
``centre_leaf_url`` signing with ``leaf_seed``. Its store is ``store_dir``, relative to
systemd's StateDirectory (``/var/lib/edge``) when there is one, else to the config.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from edge.config import VehicleConfig
from edge.config.sync import SyncConfig
from edge.sync.credentials import public_key_of_seed, read_seed
from edge.sync.nats_server import ServerSpec, state_dir, vehicle_spec

#: the vehicle server's config file, inside its store folder
CONF_NAME = "nats-server.conf"


def client_seed(config: SyncConfig, config_dir: Path) -> str | None:
    """The seed the vehicle's NATS clients sign with (None: an open loopback port)."""
    if config.client_seed is None:
        return None
    return read_seed(config.client_seed, config_dir, "sync.client_seed")


def vehicle_nats_spec(config: VehicleConfig, config_dir: Path) -> ServerSpec:
    """The vehicle's server; ConfigError for a seed that cannot be read or is not one."""
    sync = config.sync
    url = urlsplit(sync.nats_url)
    assert url.hostname is not None and url.port is not None  # the config checked it
    seed = client_seed(sync, config_dir)
    leaf_seed = ("" if sync.leaf_seed is None else
                 read_seed(sync.leaf_seed, config_dir, "sync.leaf_seed"))
    store = Path(sync.store_dir)
    if not store.is_absolute():
        store = state_dir(config_dir) / store
    return vehicle_spec(config.vehicle, store, url.port, sync.nats_monitor_port,
                        sync.centre_leaf_url, host=url.hostname,
                        client_keys=() if seed is None else (public_key_of_seed(seed),),
                        leaf_seed=leaf_seed)
