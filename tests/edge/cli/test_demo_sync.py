"""`edge demo --sync`: a small vehicle's bus reaches a local centre's JetStream, through
the vehicle's NATS (a keyed leaf node) and `edge centre`'s sourcing."""

from __future__ import annotations

import asyncio
from pathlib import Path

import nats
import pytest

from edge.bus import topics
from edge.bus.client import BusClient
from edge.bus.messages import Alert, ServiceHealth
from edge.cli.demo_sync import SYNC_DIR
from edge.config.centre_site import CentreSiteConfig
from edge.config.loader import load_as
from edge.sync.streams import centre_stream_name
from tests.support import Inbox, eventually, running_demo

pytestmark = pytest.mark.timeout(120)

# The vehicle's services report health on its bus; the centre's side are plain children.
SYNC_SERVICES = ("nats", "sync")
SMALL = 'vehicle = "t"\n[uplink]\nenabled = false\n'
# Functional bound: a demo's start, the leaf link and a possible kick of a stalled source
# (`stall_after_s` is 3 s in the demo) on a loaded machine.
ARRIVE_S = 60.0


async def _alerts_at_centre(centre_toml: Path) -> int:
    config = load_as(CentreSiteConfig, centre_toml)
    assert config.nats is not None and config.nats.client_seed is not None
    seed = config.nats.client_seed.read_text(centre_toml.parent)
    try:
        nc = await nats.connect(config.nats.url, allow_reconnect=False, connect_timeout=2,
                                nkeys_seed_str=seed)
    except Exception:
        return 0  # the centre's NATS is still starting
    try:
        info = await nc.jsm().stream_info(centre_stream_name("t"),
                                          subjects_filter="veh.t.alert.>")
        return sum((info.state.subjects or {}).values())
    except Exception:
        return 0
    finally:
        await nc.close()


async def test_the_demo_with_sync_brings_the_bus_to_a_local_centre(tmp_path: Path) -> None:
    config = tmp_path / "small.toml"
    config.write_text(SMALL)
    async with running_demo(config, tmp_path / "run", "--sync") as demo:
        centre_toml = demo.runtime_dir / SYNC_DIR / "centre.toml"
        await eventually(centre_toml.is_file, within=ARRIVE_S, what="the centre's config")
        bus = BusClient(demo.endpoints, source="test")
        health = Inbox(bus.subscribe(topics.SVC))
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + ARRIVE_S
            sent = 0
            # Sent again until one arrives: the bridge's bus subscription may be joining.
            while await _alerts_at_centre(centre_toml) == 0:
                assert loop.time() < deadline, f"no alert at the centre:\n{demo.output()[-3000:]}"
                bus.publish(topics.alert("gate"), Alert(text=f"{sent}"))
                sent += 1
                await asyncio.sleep(0.5)
            # The demo's summary counts a service as started once its health is seen.
            seen: set[str] = set()
            while not seen.issuperset(SYNC_SERVICES):
                seen.add((await health.expect(ServiceHealth, lambda m: m.service not in seen,
                                              within=ARRIVE_S)).service)
        finally:
            await bus.close()
    assert demo.summary is not None
    services = demo.summary["services"]
    for name in (*SYNC_SERVICES, "centre-nats", "centre-sync"):
        assert services[name]["started"] and services[name]["restarts"] == 0, services[name]

