"""The centre's NATS server (`edge centre nats`): its spec from ``[nats]``, its run.

The server is JetStream in domain ``centre`` with a leafnode port for the vehicles. Its
users are nkeys: the public key of ``nats.client_seed`` (``edge centre``, the centre
page) on the client port, and each ``[[vehicles]]`` ``nats_key`` on the leafnode port
alone. Keys are read and checked before anything listens; a key that cannot be read or
is not one is a :class:`~edge.config.errors.ConfigError` naming the file.
"""

from __future__ import annotations

from pathlib import Path

from edge.config.centre_site import CentreSiteConfig
from edge.config.errors import ConfigError
from edge.sync.credentials import public_key_of_seed, read_public_key, read_seed
from edge.sync.nats_server import CENTRE_DOMAIN, ServerSpec, state_dir


def centre_nats_spec(config: CentreSiteConfig, config_dir: Path) -> ServerSpec:
    """The centre's server as `[nats]` and `[[vehicles]]` say; ConfigError for a bad key."""
    nats = config.nats
    if nats is None:
        raise ConfigError("centre config", ["nats: missing (the [nats] section says where "
                                            "the centre's NATS listens)"])
    client_keys: tuple[str, ...] = ()
    if nats.client_seed is not None:
        client_keys = (public_key_of_seed(read_seed(nats.client_seed, config_dir,
                                                    "nats.client_seed")),)
    leaf_keys = tuple(read_public_key(v.nats_key, config_dir, f"vehicle {v.id} nats_key")
                      for v in config.vehicles if v.nats_key is not None)
    store = Path(nats.store_dir)
    if not store.is_absolute():
        store = state_dir(config_dir) / store
    cluster = nats.cluster
    return ServerSpec(
        name=cluster.server_name if cluster is not None else config.centre,
        domain=CENTRE_DOMAIN, store_dir=store, port=nats.port,
        monitor_port=nats.monitor_port, host=nats.listen, leaf_listen_port=nats.leaf_port,
        leaf_host=nats.leaf_listen, max_store_mb=nats.max_store_mb,
        client_keys=client_keys, leaf_keys=leaf_keys,
        cluster_name=cluster.name if cluster is not None else "",
        cluster_host=cluster.listen if cluster is not None else "",
        cluster_port=cluster.port if cluster is not None else 0,
        cluster_routes=tuple(cluster.routes) if cluster is not None else ())
