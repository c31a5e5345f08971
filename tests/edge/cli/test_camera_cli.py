"""`edge camera probe` and `edge sim camera`, run as the technician runs them: as commands."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
from pathlib import Path

import pytest

from drivers.sim.camera import SimCamera
from tests.support import REPO, free_port, run_edge

pytestmark = pytest.mark.timeout(60)


edge = run_edge  # `edge ARGS` as a user runs it


async def describe(port: int, name: str, stream: str = "main") -> tuple[int, dict[str, str]]:
    """One raw RTSP DESCRIBE: (status code, headers)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"DESCRIBE rtsp://127.0.0.1:{port}/{name}/{stream} RTSP/1.0\r\n"
                     "CSeq: 1\r\nAccept: application/sdp\r\n\r\n".encode())
        head = (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)).decode()
    finally:
        writer.close()
        await writer.wait_closed()
    lines = head.split("\r\n")
    headers = {}
    for line in lines[1:]:
        key, _, value = line.partition(":")
        if value:
            headers[key.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers


async def wait_listening(port: int, within: float = 30) -> None:
    """Poll until the port accepts connections."""
    async with asyncio.timeout(within):
        while True:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.02)
                continue
            writer.close()
            await writer.wait_closed()
            return


def encoded_lines(err: str) -> list[str]:
    """The sim's log lines that say it encoded a loop (rather than loading it from disk)."""
    return [line for line in err.splitlines() if "encoded" in line and " loop " in line]


# --------------------------------------------------------------------------- probe

async def test_probe_prints_a_table_then_json() -> None:
    async with SimCamera("cam", sub=None) as camera:
        code, out, err = await edge("camera", "probe", camera.url(), "--seconds", "1.5")
    assert code == 0, err
    lines = out.strip().splitlines()
    result = json.loads(lines[-1])
    for key in ("codec", "profile", "width", "height", "fps", "kbps", "gop",
                "first_keyframe_ms"):
        assert key in result, key
    assert (result["codec"], result["profile"]) == ("h264", "Constrained Baseline")
    assert (result["width"], result["height"], result["gop"]) == (1280, 720, 30)
    # Figures a loaded machine can only lower; the upper bounds are functional: fps comes
    # from presentation timestamps (the camera sends 30), kbps is kilobits (about 2,000,
    # not bytes or bits), first_keyframe_ms milliseconds since connecting (less than the
    # whole run, not a clock reading).
    assert 0 < result["fps"] <= 35 and 0 < result["kbps"] < 6000
    assert 0 < result["first_keyframe_ms"] < 60_000
    assert any(line.split() == ["resolution", "1280x720"] for line in lines[:-1])


async def test_probe_of_a_closed_port_is_one_line_and_exit_1() -> None:
    port = free_port()
    # It says "connection refused" at once rather than timing out (which would say so);
    # run_edge's own timeout catches a probe that hangs.
    code, out, err = await edge("camera", "probe", f"rtsp://127.0.0.1:{port}/x/main")
    assert code == 1 and out == ""
    assert err.strip() == f"edge: rtsp://127.0.0.1:{port}/x/main: connection refused"
    assert "Traceback" not in err


async def test_probe_of_a_wrong_path_or_password_names_it() -> None:
    async with SimCamera("cam", sub=None, user="tech", password="pw") as camera:
        code, _, err = await edge("camera", "probe", camera.url("nope", with_credentials=True))
        assert code == 1 and err.strip().endswith("404 not found (wrong stream path?)"), err
        bad = camera.url().replace("rtsp://", "rtsp://tech:wrong@")
        code, _, err = await edge("camera", "probe", bad)
        assert code == 1 and len(err.strip().splitlines()) == 1, err
        assert err.strip().endswith("401 unauthorized") and "wrong" not in err, err


# --------------------------------------------------------------------------- sim

@pytest.mark.timeout(120)  # three sim processes, one of them encoding its loops
async def test_sim_camera_answers_503_while_encoding_caches_its_loop_and_stops_on_sigterm(
        tmp_path: Path) -> None:
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path)}
    name = f"cli-{os.getpid()}"  # a loop nobody has cached
    cache = tmp_path / "edge" / "sim-camera"

    async def run_sim(port: int) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "edge", "sim", "camera", "--name", name,
            "--port", str(port), cwd=REPO, env=env, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)

    async def stop(proc: asyncio.subprocess.Process) -> str:
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 20)  # only against a hang
        assert proc.returncode == 0, err.decode()
        assert b"Traceback" not in err, err.decode()
        return err.decode()

    # Cold: it listens at once and says "not yet" until its loops are encoded.
    port = free_port()
    proc = await run_sim(port)
    try:
        await wait_listening(port)
        status, headers = await describe(port, name)
        assert (status, headers.get("retry-after")) == (503, "1")
        async with asyncio.timeout(30):
            while (await describe(port, name, "sub"))[0] != 200:  # main is encoded first
                await asyncio.sleep(0.2)
        assert (await describe(port, name, "main"))[0] == 200
        await stop(proc)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    files = sorted(p.name for p in cache.iterdir())
    assert len(files) == 2 and all(f.endswith(".loop") for f in files), files  # main and sub

    # Warm: the loops come from disk, not from another encode.
    stored = {p.name: p.stat().st_mtime_ns for p in cache.iterdir()}
    port = free_port()
    proc = await run_sim(port)
    try:
        await wait_listening(port)
        async with asyncio.timeout(30):
            while (await describe(port, name, "sub"))[0] != 200:
                await asyncio.sleep(0.02)
        err = await stop(proc)
        assert encoded_lines(err) == [], err
        assert {p.name: p.stat().st_mtime_ns for p in cache.iterdir()} == stored
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()

    # SIGTERM in the middle of an encode does not wait for the encode to finish. Shown by
    # what is left, not by a stopwatch: an encode that ran on to its end would have logged
    # and stored its loop, so both loops could not have been encoded again.
    for f in cache.iterdir():
        f.write_bytes(f.read_bytes()[:1000])  # corrupt: ignored, encoded again
    port = free_port()
    proc = await run_sim(port)
    try:
        await wait_listening(port)
        assert (await describe(port, name))[0] == 503  # main still encoding
        err = await stop(proc)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert "ignoring loop cache file" in err
    assert len(encoded_lines(err)) < 2, err  # main is encoded first, then sub
    assert any(p.stat().st_size == 1000 for p in cache.iterdir())  # one still the corrupt one
    assert not [p for p in cache.iterdir() if p.name.endswith(".tmp")]


async def test_sim_camera_refuses_a_taken_port_in_one_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, out, err = await edge("sim", "camera", "--name", "x", "--port", str(port))
    assert code == 1 and len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"edge: cannot listen on 127.0.0.1:{port}") and "Traceback" not in err
