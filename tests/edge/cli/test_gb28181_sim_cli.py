"""`edge sim gb28181` as a command: registers to a platform, ends cleanly on SIGTERM,
and says in one line what was wrong with bad flags or a wrong password."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from drivers.gb28181.platform import GbPlatform
from tests.support import REPO, eventually, run_edge

pytestmark = pytest.mark.timeout(60)

PLATFORM_ID = "34020000002000000001"
DEVICE_ID = "34020000001320000001"
PASSWORD = "12345678"


@pytest.fixture
async def platform() -> AsyncIterator[GbPlatform]:
    gb = GbPlatform(platform_id=PLATFORM_ID, password=PASSWORD, host="127.0.0.1", port=0)
    await gb.start()
    yield gb
    await gb.close()


async def test_registers_then_unregisters_on_sigterm(platform: GbPlatform,
                                                     tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text(PASSWORD + "\n")
    host, port = platform.address
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "edge", "sim", "gb28181", "--id", DEVICE_ID,
        "--platform", f"udp:{host}:{port}", "--platform-id", PLATFORM_ID,
        "--password-file", str(secret), "--keepalive-s", "0.5",
        cwd=REPO, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    try:
        # Generous: the interpreter, PyAV and the first loop's encode on a shared machine.
        await eventually(lambda: platform.registrar.get(DEVICE_ID), within=30,
                         what="the simulator to register")
        channels = await platform.query_catalog(DEVICE_ID)
        assert len(channels) == 2
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 20)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, err.decode()
    assert "registered to udp:127.0.0.1" in err.decode()
    # It said goodbye (REGISTER with Expires: 0) on its way out.
    assert platform.registrar.get(DEVICE_ID) is None


async def test_wrong_password_is_one_line(platform: GbPlatform) -> None:
    host, port = platform.address
    code, _, err = await run_edge("sim", "gb28181", "--id", DEVICE_ID,
                                  "--platform", f"udp:{host}:{port}", "--password", "nope")
    assert code == 1
    assert err.strip().splitlines()[-1].startswith("edge: sim gb28181: platform udp:")
    assert "wrong password" in err and "Traceback" not in err


@pytest.mark.parametrize(("args", "says"), [
    (["--id", "123", "--platform", "udp:127.0.0.1:5060", "--password", "x"], "20 digits"),
    (["--id", DEVICE_ID, "--platform", "sctp:h:1", "--password", "x"], "udp:HOST:PORT"),
    (["--id", DEVICE_ID, "--platform", "udp:127.0.0.1:5060"], "--password"),
    (["--id", DEVICE_ID, "--platform", "udp:127.0.0.1:5060", "--password-file",
      "/nonexistent/pw"], "/nonexistent/pw"),
    (["--id", DEVICE_ID, "--platform", "udp:127.0.0.1:5060", "--password", "x",
      "--channels", "0"], "channels"),
])
async def test_bad_flags_are_one_line(args: list[str], says: str) -> None:
    code, _, err = await run_edge("sim", "gb28181", *args)
    assert code == 1, err
    assert len(err.strip().splitlines()) == 1 and says in err and "Traceback" not in err
