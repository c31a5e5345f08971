"""The gb28181 service and gb28181 cameras in tests: configs, the hosted service, a device.

Devices are G's simulator (`drivers.sim.gb28181.SimGbDevice`, registers with a
digest, keeps alive, answers Catalog and INVITE with real PS over RTP) or, for
misbehaviour, the scripted device of `tests.support.gb28181`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from drivers.gb28181.sip_transport import Peer, TransportName
from drivers.sim.gb28181.device import GbDeviceError, SimGbDevice, channel_ids
from edge.bus.endpoints import Endpoints
from edge.config import VehicleConfig, parse_config
from edge.services.camera import CameraService
from edge.services.gb28181 import Gb28181Service
from tests import support

PLATFORM_ID = "34020000002000000001"
DEVICE_ID = "34020000001320000001"
CHANNELS = channel_ids(DEVICE_ID, 2)
PASSWORD = "12345678"


def vehicle_config(tmp_path: Path, *, cameras: list[dict[str, Any]] | None = None,
                   password: str = PASSWORD, **gb: Any) -> VehicleConfig:
    """`[gb28181]` on 127.0.0.1, any free port, fast keepalives; `gb` overrides any key."""
    (tmp_path / "gb.secret").write_text(password + "\n")
    section: dict[str, Any] = {
        "enabled": True, "platform_id": PLATFORM_ID, "listen": "127.0.0.1:0",
        "password": {"file": "gb.secret"}, "media_bind": "127.0.0.1",
        "keepalive_interval_s": 1.0, "request_timeout_s": 3.0, "no_media_s": 3.0,
        "devices": [{"id": DEVICE_ID, "name": "North dome"}]}
    section.update(gb)
    return parse_config({"gb28181": section, "cameras": cameras or []})


@asynccontextmanager
async def gb_service(endpoints: Endpoints, config: VehicleConfig,
                     config_dir: Path) -> AsyncIterator[Gb28181Service]:
    """`edge run gb28181`, hosted by the real runner in this event loop."""
    async with support.hosted(Gb28181Service, "gb28181", config, config_dir / "vehicle.toml",
                              endpoints, ready_within=10) as h:
        yield h.service


@asynccontextmanager
async def camera_service(endpoints: Endpoints, config: VehicleConfig, config_dir: Path,
                         camera_id: str = "dome") -> AsyncIterator[CameraService]:
    async with support.hosted(CameraService, f"camera@{camera_id}", config,
                              config_dir / "vehicle.toml", endpoints, ready_within=10) as h:
        yield h.service


def sip_address(service: Gb28181Service) -> tuple[str, int]:
    assert service.platform is not None
    return service.platform.address


@asynccontextmanager
async def sim_device(service: Gb28181Service, *, transport: TransportName = "udp",
                     password: str = PASSWORD, keepalive_s: float = 0.3,
                     ) -> AsyncIterator[tuple[SimGbDevice, asyncio.Task[None]]]:
    """G's simulated dome registered (or trying to) with the service; closed after."""
    device = SimGbDevice(DEVICE_ID, Peer(transport, *sip_address(service)), password=password,
                         platform_id=PLATFORM_ID, keepalive_s=keepalive_s,
                         local_host="127.0.0.1", t1=0.1)
    task = asyncio.create_task(device.run())
    try:
        yield device, task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, GbDeviceError):
            await task
