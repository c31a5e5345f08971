"""The centre page's test bench: bridged messages as the sync bridge makes them, and a
whole world of vehicles for the browser test.

Each vehicle of :func:`page_world` is a real one in miniature: its broker (a thread), a
simulated camera with its camera service, the uplink, the sync service (all under the
real runner in the test's event loop), and its own NATS leaf node whose leaf connection
to the centre runs through a :class:`~edge.bench.leaf_relay.LeafRelay` the test can cut.
The centre's NATS sources every vehicle's stream; the page reads it.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import aiohttp
import nats

from edge.bench.leaf_relay import LeafRelay
from edge.bus.broker import Broker
from edge.bus.client import BusClient, Subscription
from edge.bus.endpoints import Endpoints
from edge.bus.envelope import Envelope, Header
from edge.bus.messages import Message
from edge.centre.page import CentrePage, VehicleUplink
from edge.services.sync import SyncService
from edge.sync.bridge import Bridge, Outgoing
from edge.sync.nats_server import NatsServer, centre_spec, vehicle_spec
from edge.sync.streams import ensure_centre_stream
from tests import support
from tests.support import free_port
from tests.support.sync import sync_settings
from tests.support.uplink import SMALL, TOKEN, Vehicle, vehicle

PAGE_TOKEN = "centre-page-token-0123456789"
AUTH = {"Authorization": f"Bearer {PAGE_TOKEN}"}


def centre_server(tmp: Path, leaf_port: int) -> NatsServer:
    """The centre's NATS (not started), telling its leaf nodes no address of its own, so
    that a :class:`LeafRelay` between them is the only way in."""
    return NatsServer(centre_spec(tmp / "centre-store", free_port(), free_port(), leaf_port,
                                  leaf_advertise=False), tmp / "centre.conf")


@asynccontextmanager
async def linked_vehicle(tmp: Path, vehicle_id: str, leaf_port: int
                         ) -> AsyncIterator[tuple[NatsServer, LeafRelay]]:
    """A vehicle's NATS leaf node, its leaf connection through a link the test can cut."""
    link = LeafRelay(leaf_port)
    await link.restore()
    server = NatsServer(vehicle_spec(vehicle_id, tmp / "nats-store", free_port(), free_port(),
                                     link.url), tmp / "nats.conf")
    try:
        await server.start()
        yield server, link
    finally:
        await link.close()
        await server.stop()


def bridged(vehicle_id: str, topic: str, message: Message, ts_ns: int, seq: int = 1,
            source: str = "test") -> Outgoing:
    """`message` on `topic` as the real bridge puts it on NATS (subject, JSON, headers)."""
    bridge = Bridge(vehicle_id, sync_settings("nats://127.0.0.1:1"),
                    cast(Subscription, None))  # the bus side is not read here
    header = Header(type=message.TYPE, version=message.VERSION, source=source, seq=seq,
                    ts_ns=ts_ns, epoch=1)
    bridge.offer(Envelope(topic, header, message, message.to_body(), []))
    item = bridge.outbox.take()
    assert item is not None, f"the bridge leaves {topic} on the vehicle"
    return item


async def ensure_centre_streams(centre_url: str, vehicles: Sequence[str]) -> None:
    """The centre's sourcing stream for each vehicle (what `edge centre` sets up)."""
    nc = await nats.connect(centre_url, allow_reconnect=False, connect_timeout=2)
    try:
        for v in vehicles:
            await ensure_centre_stream(nc.jsm(), v, 3600, 64 * 1024 * 1024)
    finally:
        await nc.close()


@contextmanager
def running_broker() -> Iterator[Endpoints]:
    """A broker in a thread on a private runtime dir (as the `broker` fixture, for as many
    vehicles as a test needs)."""
    # Short on purpose: ipc socket paths must fit in 107 bytes.
    runtime = Path(tempfile.mkdtemp(prefix="edge-t-"))
    endpoints = Endpoints(pub=f"ipc://{runtime}/bus-pub.sock",
                          sub=f"ipc://{runtime}/bus-sub.sock",
                          router=f"ipc://{runtime}/bus-router.sock",
                          runtime_dir=runtime, request_timeout_s=2.0)
    broker = Broker(endpoints)
    broker.bind()
    thread = threading.Thread(target=broker.run, daemon=True)
    thread.start()
    try:
        yield endpoints
    finally:
        broker.stop()
        thread.join(5)
        shutil.rmtree(runtime, ignore_errors=True)
        assert not thread.is_alive(), "broker did not stop"


@dataclass
class WorldVehicle:
    id: str
    bus: BusClient
    uplink: Vehicle
    nats: NatsServer
    link: LeafRelay
    sync: SyncService


@dataclass
class PageWorld:
    centre: NatsServer
    vehicles: dict[str, WorldVehicle]
    page: CentrePage
    url: str
    http: aiohttp.ClientSession


@asynccontextmanager
async def page_world(tmp: Path, vehicle_ids: Sequence[str] = ("north", "south"), *,
                     contact_timeout_s: float = 6.0, pushes: Mapping[str, str] | None = None,
                     media_whep_url: str = "") -> AsyncIterator[PageWorld]:
    """Vehicles with one small camera each, the centre's NATS sourcing them all, and the
    page on a free port (see the module's text). Everything stops when the block ends.

    `pushes`: vehicle id -> the WHIP URL its uplink pushes its camera ``gate`` to (no
    token), from the start; `media_whep_url`: the page's `[page] media_whep_url`."""
    async with AsyncExitStack() as stack:
        leaf_port = free_port()
        centre = centre_server(tmp, leaf_port)
        await centre.start()
        stack.push_async_callback(centre.stop)
        await ensure_centre_streams(centre.url, vehicle_ids)
        vehicles: dict[str, WorldVehicle] = {}
        for vid in vehicle_ids:
            home = tmp / vid
            home.mkdir()
            server, link = await stack.enter_async_context(
                linked_vehicle(home, vid, leaf_port))
            endpoints = stack.enter_context(running_broker())
            bus = BusClient(endpoints, source="test")
            stack.push_async_callback(bus.close)
            # Health every second: the page hears each service at once, and a cut link
            # shows within the test's contact timeout.
            sync = {"enabled": True, "nats_url": server.url, "health_every_s": 1.0}
            whip_url = (pushes or {}).get(vid)
            # Retries quick and short: the push is live soon after the WHIP server is up.
            push = None if whip_url is None else {"push": {
                "whip_url": whip_url, "cameras": ["gate"], "retry_min_s": 0.5,
                "retry_max_s": 2.0}}
            up = await stack.enter_async_context(
                vehicle(home, endpoints, bus, {"gate": SMALL}, push, vehicle=vid, sync=sync))
            hosted = await stack.enter_async_context(
                support.hosted(SyncService, "sync", up.config, home / "vehicle.toml",
                               endpoints))
            vehicles[vid] = WorldVehicle(vid, bus, up, server, link, hosted.service)
        page = CentrePage(centre.url, [VehicleUplink(v, w.uplink.url, TOKEN)
                                       for v, w in vehicles.items()],
                          "127.0.0.1:0", PAGE_TOKEN.encode(),
                          contact_timeout_s=contact_timeout_s, media_whep_url=media_whep_url)
        url = await page.start()
        stack.push_async_callback(page.close)
        http = await stack.enter_async_context(aiohttp.ClientSession())
        yield PageWorld(centre, vehicles, page, url, http)
