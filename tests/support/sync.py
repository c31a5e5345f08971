"""The sync tests' bench: a centre and a vehicle NATS server joined through a link we can
cut (the sync bench's TCP relay on the leaf connection), the sync service hosted with a
`[sync]` of the test's, and a stream read back with nats-py as any centre client would."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import nats
from nats.aio.client import Client as NatsClient
from nats.js.api import RawStreamMsg

from edge.bench.leaf_relay import LeafRelay
from edge.config.sync import SyncConfig
from edge.sync.credentials import new_user_seed, public_key_of_seed
from edge.sync.nats_server import NatsServer, centre_spec, vehicle_spec
from tests.support import free_port

VEHICLE = "veh1"


@dataclass(frozen=True)
class PairKeys:
    """The nkey seeds of a keyed pair: the centre's own client, the vehicle's bridge, the
    vehicle's leaf connection, and the leaf key the centre admits (the vehicle's own
    unless a test says otherwise)."""

    centre_client: str
    vehicle_client: str
    vehicle_leaf: str
    centre_admits: str

    @classmethod
    def fresh(cls, *, wrong_leaf: bool = False) -> PairKeys:
        leaf = new_user_seed()
        return cls(new_user_seed(), new_user_seed(), leaf,
                   new_user_seed() if wrong_leaf else leaf)


@dataclass
class Pair:
    centre: NatsServer
    vehicle: NatsServer
    link: LeafRelay
    keys: PairKeys | None = None

    async def centre_client(self) -> NatsClient:
        """A client of the centre's server, with the centre's key when the pair has keys."""
        seed = None if self.keys is None else self.keys.centre_client
        return await nats.connect(self.centre.url, allow_reconnect=False, connect_timeout=2,
                                  nkeys_seed_str=seed)

    async def vehicle_client(self) -> NatsClient:
        seed = None if self.keys is None else self.keys.vehicle_client
        return await nats.connect(self.vehicle.url, allow_reconnect=False, connect_timeout=2,
                                  nkeys_seed_str=seed)


@contextlib.asynccontextmanager
async def nats_pair(tmp: Path, keys: PairKeys | None = None) -> AsyncIterator[Pair]:
    """A centre and a vehicle (`VEHICLE`) NATS server, the vehicle's leaf link through a
    :class:`LeafRelay`; both stopped when the block ends. With `keys`, both servers admit
    nkeys alone (as a product config has them)."""
    leaf = free_port()
    admitted: tuple[str, ...] = ()
    leaf_keys: tuple[str, ...] = ()
    vehicle_admits: tuple[str, ...] = ()
    if keys is not None:
        admitted = (public_key_of_seed(keys.centre_client),)
        leaf_keys = (public_key_of_seed(keys.centre_admits),)
        vehicle_admits = (public_key_of_seed(keys.vehicle_client),)
    # Advertising nothing, the centre is reached only through the relay: a cut is a cut.
    centre = NatsServer(centre_spec(tmp / "centre-store", free_port(), free_port(), leaf,
                                    client_keys=admitted, leaf_keys=leaf_keys,
                                    leaf_advertise=False),
                        tmp / "centre.conf")
    link = LeafRelay(leaf)
    await link.restore()
    vehicle = NatsServer(vehicle_spec(VEHICLE, tmp / "vehicle-store", free_port(), free_port(),
                                      link.url, client_keys=vehicle_admits,
                                      leaf_seed="" if keys is None else keys.vehicle_leaf),
                         tmp / "vehicle.conf")
    try:
        await centre.start()
        await vehicle.start()
        yield Pair(centre, vehicle, link, keys)
    finally:
        await link.close()
        await vehicle.stop()
        await centre.stop()


def sync_settings(nats_url: str, **overrides: object) -> SyncConfig:
    return SyncConfig.model_validate({"enabled": True, "nats_url": nats_url, **overrides})


async def stream_messages(url: str, stream: str, seed: str | None = None
                          ) -> list[RawStreamMsg]:
    """Every message `stream` holds, in stream order, read with nats-py's direct API."""
    nc = await nats.connect(url, allow_reconnect=False, connect_timeout=2,
                            nkeys_seed_str=seed)
    try:
        jsm = nc.jsm()
        info = await jsm.stream_info(stream)
        found = []
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            with contextlib.suppress(nats.js.errors.NotFoundError):
                found.append(await jsm.get_msg(stream, seq))
        return found
    finally:
        await nc.close()


async def stream_count(url: str, stream: str, seed: str | None = None) -> int:
    """How many messages `stream` holds now (0 while it or its server is not there)."""
    try:
        nc = await nats.connect(url, allow_reconnect=False, connect_timeout=2,
                                nkeys_seed_str=seed)
    except Exception:
        return 0
    try:
        return (await nc.jsm().stream_info(stream)).state.messages
    except Exception:
        return 0
    finally:
        await nc.close()


def body(msg: RawStreamMsg) -> dict[str, object]:
    assert msg.data is not None
    decoded: dict[str, object] = json.loads(msg.data)
    return decoded


async def subject_counts(url: str, stream: str, subjects: str) -> dict[str, int]:
    """Messages per subject matching `subjects` in `stream` ({} while it is not there)."""
    try:
        nc = await nats.connect(url, allow_reconnect=False, connect_timeout=2)
    except Exception:
        return {}
    try:
        info = await nc.jsm().stream_info(stream, subjects_filter=subjects)
        return dict(info.state.subjects or {})
    except Exception:
        return {}
    finally:
        await nc.close()
