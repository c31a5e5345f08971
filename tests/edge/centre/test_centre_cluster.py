"""The centre as a JetStream cluster, as `config/centre.example.toml` documents it: three
`edge centre nats` servers from `[nats.cluster]` configs form one cluster, the sourcing
stream of a vehicle is kept on all three, and a vehicle's leaf node on one of them is
sourced and read from another."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import nats
import pytest

from edge.centre.nats import centre_nats_spec
from edge.centre.sync import CentreSync
from edge.config.centre_site import CentreSiteConfig
from edge.sync.nats_server import NatsServer, vehicle_spec
from edge.sync.streams import centre_stream_name, ensure_vehicle_stream
from tests.support import free_port

VEHICLE = "cv-01"
NODES = ("centre-a", "centre-b", "centre-c")
# Functional bounds: three servers electing a JetStream meta leader on a loaded 2-core
# machine take seconds, not minutes.
READY_S = 45.0
ARRIVE_S = 30.0


def _node_configs(tmp: Path) -> list[CentreSiteConfig]:
    routes = {name: free_port() for name in NODES}
    leaf_port = free_port()
    configs = []
    for name in NODES:
        configs.append(CentreSiteConfig.model_validate({
            "listen": "127.0.0.1", "probe_port": free_port(),
            "nats": {"port": free_port(), "monitor_port": free_port(),
                     # The vehicle's leaf link arrives at the first node only.
                     "leaf_port": leaf_port if name == NODES[0] else free_port(),
                     "store_dir": str(tmp / name),
                     "cluster": {"server_name": name, "listen": "127.0.0.1",
                                 "port": routes[name],
                                 "routes": [f"nats-route://127.0.0.1:{p}"
                                            for p in routes.values()]}},
            "vehicles": [{"id": VEHICLE}]}))
    return configs


@pytest.mark.timeout(120)
async def test_three_centre_servers_keep_a_vehicle_stream_on_each(tmp_path: Path) -> None:
    configs = _node_configs(tmp_path)
    nodes = [NatsServer(centre_nats_spec(c, tmp_path), tmp_path / f"{n}.conf")
             for c, n in zip(configs, NODES, strict=True)]
    first = configs[0].nats
    assert first is not None
    vehicle = NatsServer(vehicle_spec(VEHICLE, tmp_path / "vehicle", free_port(), free_port(),
                                      f"nats-leaf://127.0.0.1:{first.leaf_port}"),
                         tmp_path / "vehicle.conf")
    sync = CentreSync(first, [VEHICLE], tmp_path)
    try:
        # Together: a clustered JetStream is healthy only once its peers are there.
        await asyncio.gather(*(n.start(ready_within=READY_S) for n in nodes))
        await sync.start(within_s=READY_S)
        await vehicle.start()
        vnc = await nats.connect(vehicle.url)
        try:
            await ensure_vehicle_stream(vnc.jsm(), VEHICLE, 3600, 1 << 26)
            js = vnc.jetstream()
            for i in range(5):
                await js.publish(f"veh.{VEHICLE}.alert.gate", f'{{"text":"{i}"}}'.encode(),
                                 headers={"Edge-Ts": "1"})
        finally:
            await vnc.close()
        # Read from another node than the one the vehicle is linked to.
        other = configs[1].nats
        assert other is not None
        cnc = await nats.connect(other.url)
        try:
            jsm = cnc.jsm()

            async def held() -> int:
                info = await jsm.stream_info(centre_stream_name(VEHICLE))
                return info.state.messages

            deadline = asyncio.get_running_loop().time() + ARRIVE_S
            while await held() < 5:
                assert asyncio.get_running_loop().time() < deadline, "never sourced"
                await asyncio.sleep(0.2)
            info = await jsm.stream_info(centre_stream_name(VEHICLE))
            assert info.config.num_replicas == 3
            assert info.cluster is not None and info.cluster.leader in NODES
            replicas = {r.name for r in info.cluster.replicas or []}
            assert replicas | {info.cluster.leader} == set(NODES)
        finally:
            await cnc.close()
    finally:
        await sync.close()
        await vehicle.stop()
        for n in nodes:
            with contextlib.suppress(Exception):
                await n.stop()
