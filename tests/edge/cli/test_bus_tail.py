"""`edge bus tail` prints live traffic, one decoded line a message."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from edge.bus import topics
from edge.bus.client import BusClient
from edge.bus.messages import CameraStatus
from tests.support import REPO

pytestmark = pytest.mark.timeout(60)


async def test_tail_prints_matching_messages(bus: BusClient, runtime_dir: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "edge", "bus", "tail", "cam/", "--count", "2", "--bus",
        str(runtime_dir), "--config", str(REPO / "config" / "demo.toml"),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        async with asyncio.timeout(30):
            while proc.returncode is None:
                bus.publish(topics.alert("x"), CameraStatus())  # not under cam/: never shown
                bus.publish(topics.cam_status("north-gate"),
                            CameraStatus(camera_id="north-gate", state="live", fps=25.0))
                try:
                    await asyncio.wait_for(proc.wait(), 0.3)
                except TimeoutError:
                    pass
            out, err = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    lines = out.decode().splitlines()
    assert len(lines) == 2, err.decode()
    assert " cam/north-gate/status cam.status test#" in lines[0]
    assert '"state":"live"' in lines[0] and '"fps":25.0' in lines[0]
