"""Fixtures every test may use: a private runtime dir and a real broker on it."""

from __future__ import annotations

import shutil
import tempfile
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from edge.bus.broker import Broker
from edge.bus.client import BusClient
from edge.bus.endpoints import Endpoints


@pytest.fixture(autouse=True)
def _private_service_cache(monkeypatch: pytest.MonkeyPatch,
                           tmp_path_factory: pytest.TempPathFactory) -> None:
    """The services' cache (`$CACHE_DIRECTORY`, systemd's; the ONVIF cameras' remembered
    stream URIs) in a directory of this test, inherited by every process it starts: a URI
    remembered by another test, for a simulator on a port now reused, must not steer
    this one. The simulators' loop cache (`$XDG_CACHE_HOME`) stays shared: it only saves
    time."""
    monkeypatch.setenv("CACHE_DIRECTORY", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture
def runtime_dir() -> Iterator[Path]:
    # Short on purpose: ipc socket paths must fit in 107 bytes.
    d = Path(tempfile.mkdtemp(prefix="edge-t-"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def endpoints(runtime_dir: Path) -> Endpoints:
    return Endpoints(pub=f"ipc://{runtime_dir}/bus-pub.sock",
                     sub=f"ipc://{runtime_dir}/bus-sub.sock",
                     router=f"ipc://{runtime_dir}/bus-router.sock",
                     runtime_dir=runtime_dir, request_timeout_s=2.0)


@pytest.fixture
def broker(endpoints: Endpoints) -> Iterator[Broker]:
    """A real broker in a thread of the test process (it has its own context)."""
    b = Broker(endpoints)
    b.bind()
    t = threading.Thread(target=b.run, daemon=True)
    t.start()
    yield b
    b.stop()
    t.join(5)
    assert not t.is_alive(), "broker did not stop"


@pytest.fixture
async def bus(endpoints: Endpoints, broker: Broker) -> AsyncIterator[BusClient]:
    client = BusClient(endpoints, source="test")
    yield client
    await client.close()
