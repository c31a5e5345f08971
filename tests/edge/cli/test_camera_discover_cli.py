"""`edge camera discover`, run as a technician runs it, against the simulated ONVIF camera.

The camera and its device (with a WS-Discovery responder on a private UDP port
on loopback) run in the test's event loop; `edge` is a separate process that
probes that port.
"""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support import run_edge
from tests.support.onvif_client import CREDENTIALS, USER, OnvifCamera, onvif_camera

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def cam() -> AsyncIterator[OnvifCamera]:
    async with onvif_camera("gate-cam", discovery=True) as c:
        yield c


def probe_address(cam: OnvifCamera) -> str:
    assert cam.device.discovery is not None
    return f"127.0.0.1:{cam.device.discovery.port}"


async def test_discover_prints_the_device_and_json_last(cam: OnvifCamera) -> None:
    code, out, err = await run_edge("camera", "discover", "--timeout", "1",
                                    "--address", probe_address(cam))
    assert code == 0, err
    lines = out.strip().splitlines()
    [device] = json.loads(lines[-1])["devices"]
    assert (device["address"], device["name"], device["hardware"], device["xaddrs"]) == (
        "127.0.0.1", "gate-cam", "sim-camera", [cam.address])
    assert device["endpoint"] == cam.device.endpoint
    assert lines[0].split() == ["127.0.0.1", "gate-cam", "(sim-camera)"]
    assert f"device service {cam.address}" in out
    assert "profiles" not in device  # no credentials: nothing asked of the device


async def test_with_credentials_it_lists_profiles_and_stream_uris(
        cam: OnvifCamera, tmp_path: Path) -> None:
    (tmp_path / "cred").write_text(CREDENTIALS + "\n")
    code, out, err = await run_edge("camera", "discover", "--timeout", "1", "--address",
                                    probe_address(cam), "--credentials-file",
                                    str(tmp_path / "cred"))
    assert code == 0, err
    [device] = json.loads(out.strip().splitlines()[-1])["devices"]
    assert device["error"] is None
    assert [(p["token"], p["width"], p["height"], p["uri"]) for p in device["profiles"]] == [
        ("main", 1280, 720, cam.camera.url("main")), ("sub", 640, 360, cam.camera.url("sub"))]
    assert f"profile main H264 1280x720  {cam.camera.url('main')}" in out


async def test_wrong_credentials_are_told_per_device(cam: OnvifCamera, tmp_path: Path) -> None:
    (tmp_path / "cred").write_text(f"{USER}:nope\n")
    code, out, err = await run_edge("camera", "discover", "--timeout", "1", "--address",
                                    probe_address(cam), "--credentials-file",
                                    str(tmp_path / "cred"))
    assert code == 0, err
    [device] = json.loads(out.strip().splitlines()[-1])["devices"]
    assert device["profiles"] == []
    assert device["error"] == (f"ONVIF {cam.address}: GetDeviceInformation: "
                               "wrong user name or password (NotAuthorized)")
    assert "Traceback" not in err and "nope" not in out


async def test_nobody_answering_is_said_and_an_empty_list() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as quiet:
        quiet.bind(("127.0.0.1", 0))
        code, out, err = await run_edge("camera", "discover", "--timeout", "0.5", "--address",
                                        f"127.0.0.1:{quiet.getsockname()[1]}")
    assert code == 0, err
    lines = out.strip().splitlines()
    assert lines[0] == "no ONVIF device answered within 0.5 s"
    assert json.loads(lines[-1]) == {"devices": []}


@pytest.mark.parametrize(("args", "expected"), [
    (["--address", "127.0.0.1"], 'edge: --address: expected HOST:PORT, got "127.0.0.1"'),
    (["--address", "127.0.0.1:70000"], "edge: --address: port 70000 is not in 1-65535 "
                                       "(in 127.0.0.1:70000)"),
    (["--timeout", "0"], "edge: --timeout 0: expected seconds in (0, 600]"),
    (["--interface", "eth0", "--timeout", "0.1"], "edge: interface eth0: expected an IPv4 "
                                                  "address of this host, e.g. 192.168.1.10"),
    (["--credentials-file", "/nonexistent/cred"],
     "edge: --credentials-file /nonexistent/cred: No such file or directory"),
])
async def test_bad_arguments_are_one_line(args: list[str], expected: str) -> None:
    code, out, err = await run_edge("camera", "discover", *args)
    assert (code, err.strip()) == (1, expected)
