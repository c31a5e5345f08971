"""Fixtures for the camera driver tests: simulated cameras, ingests, a raw RTSP client.

Everything runs against real sockets on 127.0.0.1.  Simulated cameras share a
per-process cache of encoded loops, so tests that use the same settings pay for
the encode once; keep names and sizes identical unless a test needs otherwise.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from drivers.rtsp import RtspSource
from drivers.sim.camera import SimCamera
from tests.support.rtsp import (
    CAMERA_NAME,
    LOOP_SECONDS,
    CameraFactory,
    IngestFactory,
    RawRtspClient,
    Units,
)


@pytest.fixture
async def sim_camera() -> AsyncIterator[CameraFactory]:
    """Factory: `await sim_camera(**SimCamera kwargs)` -> a started camera, closed after."""
    cameras: list[SimCamera] = []

    async def make(**options: Any) -> SimCamera:
        options.setdefault("loop_seconds", LOOP_SECONDS)
        camera = SimCamera(options.pop("name", CAMERA_NAME), **options)
        cameras.append(camera)
        await camera.start()
        return camera

    yield make
    for camera in cameras:
        await camera.close()


@pytest.fixture
async def ingest_factory() -> AsyncIterator[IngestFactory]:
    """Factory: `await ingest_factory(url, **RtspSource kwargs)` -> a started ingest.

    Unless given another sink, it hands its units to a `Units` (see `take`).
    """
    ingests: list[RtspSource] = []

    async def make(url: str, **options: Any) -> RtspSource:
        options.setdefault("sink", Units())
        ingest = RtspSource(url, **options)
        ingests.append(ingest)
        await ingest.start()
        return ingest

    yield make
    for ingest in ingests:
        await ingest.stop()


@pytest.fixture
async def raw_client() -> AsyncIterator[Callable[..., Awaitable[RawRtspClient]]]:
    clients: list[RawRtspClient] = []

    async def make(camera: SimCamera, **options: Any) -> RawRtspClient:
        client = await RawRtspClient.connect(camera.host, camera.port, **options)
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()
