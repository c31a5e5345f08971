"""`edge sim camera --onvif` as a command: an ONVIF PTZ camera that onvif-zeep-async
can use and a Probe finds, ending cleanly on SIGTERM; bad ONVIF flags are one line."""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
from pathlib import Path

import aiohttp
import pytest
from onvif import ONVIFCamera

from tests.support import REPO, free_port, run_edge
from tests.support.onvif_sim import probe

pytestmark = pytest.mark.timeout(60)


async def profiles(port: int, password: str) -> list[str] | None:
    """The profile tokens, or None while nothing listens on the port yet."""
    camera = ONVIFCamera("127.0.0.1", port, "admin", password)
    try:
        await camera.update_xaddrs()
        media = await camera.create_media_service()
        return [p.token for p in await media.GetProfiles()]
    except aiohttp.ClientConnectorError:
        return None
    finally:
        await camera.close()


async def test_serves_onvif_and_discovery_then_stops_on_sigterm(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("s3cret\n")
    rtsp, onvif, discovery = free_port(), free_port(), free_port(socket.SOCK_DGRAM)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "edge", "sim", "camera", "--name", "cam1",
        "--port", str(rtsp), "--onvif", str(onvif), "--onvif-user", "admin",
        "--onvif-password-file", str(secret), "--discovery-port", str(discovery),
        cwd=REPO, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    try:
        # Generous: the interpreter's start-up on a shared machine.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 40
        while (tokens := await profiles(onvif, "s3cret")) is None:
            assert loop.time() < deadline, "the ONVIF device did not answer"
            assert proc.returncode is None, "edge sim camera exited"
            await asyncio.sleep(0.2)
        assert tokens == ["main", "sub"]
        [match] = await asyncio.to_thread(probe, ("127.0.0.1", discovery), expect=1)
        assert match.xaddrs == [f"http://127.0.0.1:{onvif}/onvif/device_service"]
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 20)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, err.decode()
    assert "Traceback" not in err.decode()


@pytest.mark.parametrize(("args", "says"), [
    (["--onvif-user", "admin"], "need --onvif PORT"),
    (["--onvif", "8080", "--onvif-user", "admin"], "go together"),
    (["--onvif", "8080", "--onvif-user", "admin", "--onvif-password-file", "/nonexistent/pw"],
     "/nonexistent/pw"),
    (["--onvif", "70000"], "--onvif must be a port"),
    (["--onvif", "8554"], "is the RTSP --port"),
    (["--onvif", "8080", "--discovery-port", "-1"], "--discovery-port"),
])
async def test_bad_onvif_flags_are_one_line(args: list[str], says: str) -> None:
    code, _, err = await run_edge("sim", "camera", "--name", "cam1", *args)
    assert code == 1, err
    assert len(err.strip().splitlines()) == 1 and says in err and "Traceback" not in err


async def test_a_taken_onvif_port_is_one_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, _, err = await run_edge("sim", "camera", "--name", "cam1", "--port",
                                      str(free_port()), "--onvif", str(port),
                                      "--discovery-port", "0")
    assert code == 1, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("edge: cannot listen on") and str(port) in last, err
    assert "Traceback" not in err
