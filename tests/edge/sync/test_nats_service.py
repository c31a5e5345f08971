"""`edge run nats`: the vehicle's NATS server as a service under the real runner, with a
real centre server that refuses its key, or no centre at all, and a child that dies."""

from __future__ import annotations

from pathlib import Path

import nats
import pytest

from edge.bus import topics
from edge.bus.client import BusClient
from edge.bus.endpoints import Endpoints
from edge.bus.messages import ServiceHealth
from edge.config import VehicleConfig
from edge.services.nats import NatsService, leaf_complaint
from edge.sync.credentials import new_user_seed, public_key_of_seed
from edge.sync.nats_server import NatsServer, centre_spec
from edge.sync.streams import VEHICLE_STREAM, ensure_vehicle_stream
from tests.support import Inbox, eventually, free_port, hosted
from tests.support.sync import VEHICLE, stream_count

# Functional bounds: a loaded 2-core machine is slow, not wrong.
HEALTH_S = 30.0


def _config(tmp: Path, centre_leaf_url: str) -> tuple[VehicleConfig, str]:
    """A vehicle whose [sync] has both seeds in files beside its config; the client seed."""
    client, leaf = new_user_seed(), new_user_seed()
    (tmp / "nats-client.seed").write_text(client + "\n")
    (tmp / "nats-leaf.seed").write_text(leaf + "\n")
    sync = {"enabled": True, "nats_url": f"nats://127.0.0.1:{free_port()}",
            "nats_monitor_port": free_port(), "centre_leaf_url": centre_leaf_url,
            "client_seed": {"file": "nats-client.seed"},
            "leaf_seed": {"file": "nats-leaf.seed"}}
    return VehicleConfig.model_validate({"vehicle": VEHICLE, "sync": sync}), client


async def _store_locally(url: str, seed: str, count: int) -> None:
    nc = await nats.connect(url, allow_reconnect=False, connect_timeout=2, nkeys_seed_str=seed)
    try:
        await ensure_vehicle_stream(nc.jsm(), VEHICLE, 3600, 1 << 26)
        js = nc.jetstream()
        for i in range(count):
            await js.publish(f"veh.{VEHICLE}.alert.gate", f"{i}".encode())
    finally:
        await nc.close()


def _one_clean_line(detail: str) -> None:
    assert "\n" not in detail and "Traceback" not in detail and "Error(" not in detail


def test_the_leaf_complaint_is_nats_servers_own_words() -> None:
    lines = ["[1] 2026/12/02 01:20:41.368204 [INF] Server is ready",
             "[1] 2026/12/02 01:20:42.382687 [ERR] 127.0.0.1:7422 - lid:13 - Leafnode Error "
             "'Authorization Violation'",
             "[1] 2026/12/02 01:20:42.383165 [INF] 127.0.0.1:7422 - lid:13 - Leafnode "
             "connection closed: Client Closed - Remote: centre"]
    assert leaf_complaint(lines) == "Leafnode Error 'Authorization Violation'"
    assert leaf_complaint(lines[:1]) == ""


async def test_a_centre_that_refuses_the_vehicles_key_is_one_line_and_it_keeps_storing(
        tmp_path: Path, endpoints: Endpoints, bus: BusClient) -> None:
    someone_else = public_key_of_seed(new_user_seed())
    centre_client = public_key_of_seed(new_user_seed())
    leaf_port = free_port()
    centre = NatsServer(centre_spec(tmp_path / "centre", free_port(), free_port(), leaf_port,
                                    client_keys=(centre_client,), leaf_keys=(someone_else,)),
                        tmp_path / "centre.conf")
    await centre.start()
    try:
        config, client = _config(tmp_path, f"nats-leaf://127.0.0.1:{leaf_port}")
        inbox = Inbox(bus.subscribe(topics.svc_health("nats")))
        async with hosted(NatsService, "nats", config, tmp_path / "v.toml", endpoints) as h:
            down = await inbox.expect(ServiceHealth, lambda m: m.state == "degraded",
                                      within=HEALTH_S)
            assert "Authorization Violation" in down.detail, down.detail
            assert "storing locally" in down.detail
            _one_clean_line(down.detail)
            assert not h.service.leaf_up
            await _store_locally(config.sync.nats_url, client, 5)
            assert await stream_count(config.sync.nats_url, VEHICLE_STREAM, client) == 5
            # The store is where [sync] store_dir says, beside the config here.
            assert (tmp_path / "nats" / "nats-server.conf").is_file()
    finally:
        await centre.stop()


@pytest.mark.timeout(90)
async def test_an_unreachable_centre_is_one_line_and_a_dead_server_is_started_again(
        tmp_path: Path, endpoints: Endpoints, bus: BusClient) -> None:
    config, client = _config(tmp_path, f"nats-leaf://127.0.0.1:{free_port()}")
    inbox = Inbox(bus.subscribe(topics.svc_health("nats")))
    async with hosted(NatsService, "nats", config, tmp_path / "v.toml", endpoints) as h:
        down = await inbox.expect(ServiceHealth, lambda m: m.state == "degraded",
                                  within=HEALTH_S)
        assert "connection refused" in down.detail, down.detail
        _one_clean_line(down.detail)
        await _store_locally(config.sync.nats_url, client, 3)

        server = h.service.server
        assert server is not None and server.proc is not None
        server.proc.kill()  # the server dies under the service
        await eventually(lambda: h.service.restarts == 1 and server.running, within=HEALTH_S,
                         what="the service to start nats-server again")
        # What was stored before the crash is still there (a file store).
        assert await stream_count(config.sync.nats_url, VEHICLE_STREAM, client) == 3
        mark = inbox.mark()
        again = await inbox.expect(ServiceHealth, lambda m: "connection refused" in m.detail,
                                   within=HEALTH_S, since=mark)
        _one_clean_line(again.detail)


async def test_a_disabled_sync_has_no_nats_and_says_so(
        tmp_path: Path, endpoints: Endpoints, bus: BusClient) -> None:
    config = VehicleConfig.model_validate({"vehicle": VEHICLE, "sync": {"enabled": False}})
    with pytest.raises(AssertionError, match=r"exit 2"):
        async with hosted(NatsService, "nats", config, tmp_path / "v.toml", endpoints):
            pass
