"""`edge sim cameras` and `edge sim drones` as commands (the demo's `sim-cameras` and
`sim-drones`): several devices in one process, each a group of `edge sim camera`'s or
`edge sim drone`'s flags; a camera whose port is taken is one line while the others
serve; none able to listen is one line each and exit 1; SIGTERM ends them cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest

from drivers.mavlink import DroneLink
from edge.cli import build_parser
from tests.support import REPO, free_port, run_edge
from tests.support.rtsp import RawRtspClient

pytestmark = pytest.mark.timeout(90)

# Functional bound: the interpreter's start and, on a machine with no loop cache yet, the
# first encodes, on two cores shared with other tests.
SERVING_S = 60.0


@contextlib.asynccontextmanager
async def edge_process(*args: str) -> AsyncIterator[asyncio.subprocess.Process]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "edge", *args, cwd=REPO, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def describe_ok(port: int, name: str, proc: asyncio.subprocess.Process) -> None:
    """Wait until rtsp://127.0.0.1:PORT/NAME/main answers DESCRIBE with 200."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + SERVING_S
    while True:
        assert proc.returncode is None, "the simulator exited"
        with contextlib.suppress(OSError):
            client = await RawRtspClient.connect("127.0.0.1", port)
            try:
                reply = await client.request("DESCRIBE", f"rtsp://127.0.0.1:{port}/{name}/main")
            finally:
                await client.close()
            if reply.status == 200:
                return
        assert loop.time() < deadline, f"camera {name} not serving on {port}"
        await asyncio.sleep(0.2)


def log_lines(err: bytes, level: str) -> list[str]:
    """The messages of the JSON log lines (stderr is no terminal) at this level."""
    lines = [json.loads(line) for line in err.decode().splitlines() if line.startswith("{")]
    return [line["msg"] for line in lines if line.get("level") == level]


async def test_cameras_serve_beside_one_whose_port_is_taken_then_stop_on_sigterm() -> None:
    north, east = free_port(), free_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        async with edge_process("sim", "cameras",
                                "--name", "north", "--port", str(north),
                                "--name", "east", "--port", str(east), "--profile", "high",
                                "--name", "late", "--port", str(port)) as proc:
            await describe_ok(north, "north", proc)
            await describe_ok(east, "east", proc)
            proc.send_signal(signal.SIGTERM)
            _, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 0, err.decode()
    assert b"Traceback" not in err
    assert log_lines(err, "error") == [
        f"camera late: cannot listen on 127.0.0.1:{port}: Address already in use; "
        "trying again"], err.decode()


async def test_no_camera_able_to_listen_is_a_line_each_and_exit_1() -> None:
    with socket.socket() as one, socket.socket() as two:
        for sock in (one, two):
            sock.bind(("127.0.0.1", 0))
            sock.listen()
        ports = [one.getsockname()[1], two.getsockname()[1]]
        code, out, err = await run_edge("sim", "cameras", "--name", "a", "--port",
                                        str(ports[0]), "--name", "b", "--port", str(ports[1]))
    assert code == 1, err
    said = [line for line in err.splitlines() if not line.startswith("{")]
    assert said == [f"edge: sim cameras: camera {name}: cannot listen on 127.0.0.1:{port}: "
                    "Address already in use" for name, port in zip("ab", ports, strict=True)]


async def test_drones_fly_in_one_process_each_on_its_link() -> None:
    one, two = free_port(), free_port()
    url = "rtsp://127.0.0.1:8554/gimbal/main"
    async with edge_process("sim", "drones",
                            "--connection", f"tcp:127.0.0.1:{one}", "--sysid", "1",
                            "--home", "30.5935,114.306", "--camera", url,
                            "--connection", f"tcp:127.0.0.1:{two}", "--sysid", "2") as proc:
        async def heard(port: int, sysid: int, camera: str | None) -> None:
            # The simulator listens a moment after it starts: connect until it does.
            loop = asyncio.get_running_loop()
            deadline = loop.time() + SERVING_S
            while True:
                assert proc.returncode is None, "edge sim drones exited"
                try:
                    async with DroneLink(f"tcp:127.0.0.1:{port}") as link:
                        while not (sysid in link.vehicles
                                   and link.vehicles[sysid].telemetry.lat is not None
                                   and (camera is None or link.video_streams)):
                            await asyncio.sleep(0.05)
                        assert set(link.vehicles) == {sysid}
                        assert [s.uri for s in link.video_streams] == \
                            ([camera] if camera else [])
                        return
                except OSError:
                    assert loop.time() < deadline, f"nothing listens on {port}"
                    await asyncio.sleep(0.2)

        await asyncio.wait_for(asyncio.gather(heard(one, 1, url), heard(two, 2, None)),
                               SERVING_S)
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 0, err.decode()
    assert b"Traceback" not in err and not log_lines(err, "error"), err.decode()


def devices(*argv: str) -> list[dict[str, Any]]:
    args = build_parser().parse_args(list(argv))
    return list(args.devices)


def test_each_group_of_flags_is_one_device() -> None:
    assert devices("sim", "cameras", "--name", "a", "--port", "1", "--codec", "h265",
                   "--name", "b", "--onvif", "8080", "--port", "2") == [
        {"name": "a", "port": 1, "codec": "h265"}, {"name": "b", "onvif": 8080, "port": 2}]
    assert devices("sim", "drones", "--connection", "tcp:127.0.0.1:1", "--home", "1,2",
                   "--connection", "udpout:127.0.0.1:2", "--sysid", "3") == [
        {"connection": "tcp:127.0.0.1:1", "home": (1.0, 2.0)},
        {"connection": "udpout:127.0.0.1:2", "sysid": 3}]


@pytest.mark.parametrize(("args", "code", "says"), [
    (["cameras"], 1, "edge: sim cameras: give at least one --name and its flags"),
    (["cameras", "--port", "1"], 2, "--port is a camera's: give --name first"),
    (["cameras", "--name", "a", "--port", "1", "--port", "2"], 2,
     "--port given twice for camera a"),
    (["cameras", "--name", "a", "--port", "0"], 1,
     "edge: sim cameras: camera a: --port must be 1..65535, got 0"),
    (["cameras", "--name", "a", "--port", "9000", "--name", "b", "--port", "9001",
      "--onvif", "9000"], 1, "edge: sim cameras: camera b: --onvif 9000 is camera a's --port"),
    (["cameras", "--name", "a", "--port", "9000", "--name", "a", "--port", "9001"], 1,
     "edge: sim cameras: two cameras named a"),
    (["cameras", "--name", "a", "--onvif-credentials-file", "/nonexistent"], 1,
     "edge: sim cameras: camera a: --onvif-user, --onvif-password-file and "
     "--onvif-credentials-file need --onvif PORT"),
    (["drones", "--sysid", "2"], 2, "--sysid is a drone's: give --connection first"),
    (["drones", "--connection", "tcp:127.0.0.1:1", "--sysid", "0"], 1,
     "edge: sim drones: drone on tcp:127.0.0.1:1: --sysid must be 1..254, got 0"),
    (["drones", "--connection", "tcp:127.0.0.1:1", "--connection", "tcp:127.0.0.1:1"], 1,
     "edge: sim drones: two drones on tcp:127.0.0.1:1"),
])
async def test_flags_that_do_not_fit_are_one_line(args: list[str], code: int,
                                                  says: str) -> None:
    got, out, err = await run_edge("sim", *args)
    assert got == code, err
    last = err.strip().splitlines()[-1]  # a usage error comes after argparse's usage text
    assert says in last and "Traceback" not in err, err
    if code == 1:
        assert len(err.strip().splitlines()) == 1, err
