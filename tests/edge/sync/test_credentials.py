"""NATS nkeys: made by `edge centre keys`, checked where they are read, required by the
servers (a real centre and vehicle pair), and a port open to anyone refused."""

from __future__ import annotations

import asyncio
import stat
from pathlib import Path

import nats
import nats.errors
import pytest
from pydantic import ValidationError

from edge.config.centre_site import CentreSiteConfig
from edge.config.errors import ConfigError
from edge.config.secrets import SecretRef
from edge.config.sync import SyncConfig
from edge.sync.credentials import (
    check_public_key,
    new_user_seed,
    public_key_of_seed,
    read_public_key,
    read_seed,
)
from edge.sync.nats_server import NatsServerError, centre_spec, vehicle_spec
from edge.sync.streams import centre_stream_name, ensure_centre_stream, ensure_vehicle_stream
from tests.support import run_edge
from tests.support.sync import VEHICLE, PairKeys, nats_pair, stream_count

# Functional bound: sourcing over a fresh leaf link on a loaded machine.
ARRIVE_S = 30.0


def _flip(text: str) -> str:
    """The same key with one character changed: its checksum no longer holds."""
    i = len(text) // 2
    return text[:i] + ("A" if text[i] != "A" else "B") + text[i + 1:]


def test_a_seed_gives_its_public_key_and_damaged_keys_are_refused() -> None:
    seed = new_user_seed()
    public = public_key_of_seed(seed)
    assert seed.startswith("SU") and public.startswith("U") and len(public) == 56
    assert check_public_key(public + "\n") == public
    for bad, why in [(_flip(public), "checksum"), (seed, "a seed"), ("hello", "56 char")]:
        with pytest.raises(ValueError, match=why):
            check_public_key(bad)
    for bad, why in [(_flip(seed), "checksum"), (public, "a public key"), ("", "58 char")]:
        with pytest.raises(ValueError, match=why):
            public_key_of_seed(bad)


def test_key_files_that_are_wrong_are_one_line_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / "leaf.seed").write_text(_flip(new_user_seed()))
    (tmp_path / "veh.pub").write_text(new_user_seed())
    with pytest.raises(ConfigError) as e:
        read_seed(SecretRef(file="leaf.seed"), tmp_path, "sync.leaf_seed")
    assert str(e.value).count("\n") == 0
    assert "leaf.seed" in str(e.value) and "sync.leaf_seed" in str(e.value)
    with pytest.raises(ConfigError, match="veh.pub.*a seed"):
        read_public_key(SecretRef(file="veh.pub"), tmp_path, "nats_key")
    with pytest.raises(ConfigError, match="missing.seed.*cannot read"):
        read_seed(SecretRef(file="missing.seed"), tmp_path, "sync.client_seed")


async def test_edge_centre_keys_writes_a_private_seed_and_never_overwrites(
        tmp_path: Path) -> None:
    code, out, err = await run_edge("centre", "keys", "cv-01-leaf", "--dir", str(tmp_path))
    assert code == 0, err
    seed = (tmp_path / "cv-01-leaf.seed").read_text().strip()
    public = (tmp_path / "cv-01-leaf.pub").read_text().strip()
    assert public_key_of_seed(seed) == public
    assert public in out
    assert stat.S_IMODE((tmp_path / "cv-01-leaf.seed").stat().st_mode) == 0o600
    code, out, err = await run_edge("centre", "keys", "cv-01-leaf", "--dir", str(tmp_path))
    assert code == 1 and err.count("\n") == 1 and "exists already" in err
    assert (tmp_path / "cv-01-leaf.seed").read_text().strip() == seed
    code, _, err = await run_edge("centre", "keys", "../escape", "--dir", str(tmp_path))
    assert code == 1 and "not a key name" in err and "Traceback" not in err


def test_a_port_open_beyond_loopback_without_keys_is_refused(tmp_path: Path) -> None:
    public = public_key_of_seed(new_user_seed())
    with pytest.raises(NatsServerError, match="client port would listen on 10.1.2.3"):
        vehicle_spec(VEHICLE, tmp_path, 4222, 8222, "", host="10.1.2.3").config_text()
    with pytest.raises(NatsServerError, match="leafnode port would listen on 10.77.0.1"):
        centre_spec(tmp_path, 4222, 8222, 7422, leaf_host="10.77.0.1").config_text()
    vehicle_key = public_key_of_seed(new_user_seed())
    keyed = centre_spec(tmp_path, 4222, 8222, 7422, leaf_host="10.77.0.1",
                        client_keys=(public,), leaf_keys=(vehicle_key,)).config_text()
    assert '"LEAFNODE"' in keyed and '"127.0.0.1:8222"' in keyed  # monitor: loopback
    with pytest.raises(NatsServerError, match="both a client's and a vehicle's"):
        centre_spec(tmp_path, 4222, 8222, 7422, client_keys=(public,),
                    leaf_keys=(public,)).check()
    # The vehicle's seed is never written into the file: nats-server reads it from its
    # environment.
    seed = new_user_seed()
    text = vehicle_spec(VEHICLE, tmp_path, 4222, 8222, "nats-leaf://10.77.0.1:7422",
                        leaf_seed=seed).config_text()
    assert seed not in text and "$EDGE_NATS_LEAF_SEED" in text

    with pytest.raises(ValidationError, match="client_seed"):
        SyncConfig.model_validate({"nats_url": "nats://10.1.2.3:4222"})
    with pytest.raises(ValidationError, match="leaf_seed"):
        SyncConfig.model_validate({"centre_leaf_url": "nats-leaf://10.77.0.1:7422"})
    SyncConfig.model_validate({"centre_leaf_url": "nats-leaf://10.77.0.1:7422",
                               "leaf_seed": {"credential": "nats-leaf.seed"}})
    centre = {"listen": "127.0.0.1", "vehicles": [{"id": "cv-01"}]}
    with pytest.raises(ValidationError, match="leaf port would admit anyone"):
        CentreSiteConfig.model_validate({**centre, "nats": {"leaf_listen": "10.77.0.1"}})
    with pytest.raises(ValidationError, match="client_seed"):
        CentreSiteConfig.model_validate(
            {**centre, "vehicles": [{"id": "cv-01", "nats_key": {"file": "cv-01.pub"}}],
             "nats": {"leaf_listen": "10.77.0.1"}})


async def test_keyed_servers_admit_their_keys_alone_and_source_over_the_leaf(
        tmp_path: Path) -> None:
    keys = PairKeys.fresh()
    async with nats_pair(tmp_path, keys) as pair:
        for url, seed in [(pair.vehicle.url, None), (pair.centre.url, None),
                          # A vehicle's leaf key opens a leaf connection and nothing else.
                          (pair.centre.url, keys.vehicle_leaf),
                          (pair.vehicle.url, keys.centre_client)]:
            with pytest.raises(nats.errors.Error, match="Authorization Violation"):
                await nats.connect(url, allow_reconnect=False, connect_timeout=2,
                                   nkeys_seed_str=seed)
        vn, cn = await pair.vehicle_client(), await pair.centre_client()
        try:
            await ensure_vehicle_stream(vn.jsm(), VEHICLE, 3600, 1 << 26)
            await ensure_centre_stream(cn.jsm(), VEHICLE, 3600, 1 << 26)
            js = vn.jetstream()
            for i in range(5):
                await js.publish(f"veh.{VEHICLE}.alert.x", f"{i}".encode())
        finally:
            await vn.close()
            await cn.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + ARRIVE_S
        stream = centre_stream_name(VEHICLE)
        while await stream_count(pair.centre.url, stream, keys.centre_client) < 5:
            assert loop.time() < deadline, "nothing sourced over the keyed leaf link"
            await asyncio.sleep(0.2)
