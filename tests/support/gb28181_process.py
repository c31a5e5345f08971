"""A gb28181 camera as systemd runs it: `edge run camera@<id>` in a process of its own.

For the tests where the process must really die (kill -9): the gb28181 service and the
device stay in the test's event loop (`tests.support.gb28181_service`), on the same bus.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from edge.config import VehicleConfig
from tests.support import REPO, die_with_test, toml_text
from tests.support.gb28181_service import DEVICE_ID, PASSWORD, PLATFORM_ID, vehicle_config


def process_config(tmp_path: Path, *, cameras: list[dict[str, Any]],
                   **gb: Any) -> tuple[VehicleConfig, Path]:
    """`vehicle_config(tmp_path, cameras=..., **gb)` for the hosted gb28181 service, and a
    vehicle.toml a camera process reads: the same cameras, `[gb28181]` with `gb`. The
    camera takes its media settings from the service's `gb/platform/info`, not the file."""
    config = vehicle_config(tmp_path, cameras=cameras, **gb)
    section: dict[str, object] = {
        "enabled": True, "platform_id": PLATFORM_ID, "password": {"file": "gb.secret"},
        "devices": [{"id": DEVICE_ID, "name": "North dome"}], **gb}
    text = "[gb28181]\n" + toml_text(section)
    for camera in cameras:
        text += "\n[[cameras]]\n" + toml_text(camera)
    path = tmp_path / "vehicle.toml"
    path.write_text(text)
    (tmp_path / "gb.secret").write_text(PASSWORD + "\n")
    return config, path


class CameraProcess:
    def __init__(self, proc: asyncio.subprocess.Process, log: Path) -> None:
        self.proc = proc
        self.log = log

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@asynccontextmanager
async def camera_process(runtime_dir: Path, config_path: Path, camera_id: str = "dome",
                         ) -> AsyncIterator[CameraProcess]:
    """`edge run camera@<camera_id> --config CONFIG` on the bus in `runtime_dir`; killed
    after the block if it still runs. Its stderr goes to a file (nobody reads a pipe)."""
    env = {**os.environ, "EDGE_RUNTIME_DIR": str(runtime_dir)}
    env.pop("NOTIFY_SOCKET", None)
    log = config_path.parent / f"camera@{camera_id}-{os.urandom(3).hex()}.log"
    err = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "edge", "run", f"camera@{camera_id}", "--config",
            str(config_path), cwd=REPO, env=env, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL, stderr=err, preexec_fn=die_with_test)
    finally:
        os.close(err)
    try:
        yield CameraProcess(proc, log)
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
