"""`edge drone probe`, `edge sim drone` and `edge bench mavlink`, run as an operator would."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from typing import Any

import pytest

from drivers.mavlink import DroneLink
from drivers.sim.drone import SimDrone
from drivers.sim.drone.generator import DEFAULT_RATES_HZ
from edge.cli import build_parser
from edge.cli.drone_cmd import PROBE_FIELDS
from tests.support import REPO, free_port, run_edge

pytestmark = pytest.mark.timeout(60)

HOME = (30.5935, 114.306)


edge = run_edge  # `edge ARGS` as a user runs it


async def test_probe_prints_a_table_then_json() -> None:
    async with SimDrone("tcp:127.0.0.1:0", sysid=7, home=HOME) as sim:
        assert sim.address is not None
        code, out, err = await edge("drone", "probe", f"tcp:127.0.0.1:{sim.address[1]}",
                                    "--seconds", "1.5")
    assert code == 0, err
    lines = out.strip().splitlines()
    assert lines[0].split()[:4] == ["SYSID", "AUTOPILOT", "TYPE", "MODE"]
    assert lines[1].split()[:4] == ["7", "ARDUPILOTMEGA", "QUADROTOR", "GUIDED"]
    doc = json.loads(lines[-1])
    (v,) = doc["vehicles"]
    assert tuple(v) == PROBE_FIELDS
    assert v["sysid"] == 7 and v["armed"] is True and abs(v["lat"] - HOME[0]) < 0.01
    # msgs_per_s is reported (the vehicle streams); its size is a rate, not checked here
    assert 40 < v["alt_rel_m"] < 60 and v["battery_pct"] > 90 and v["msgs_per_s"] > 0


@pytest.mark.parametrize("args, words", [
    (["tcp:127.0.0.1:{port}", "--seconds", "0.3"], "no vehicle heard on tcp:127.0.0.1:"),
    (["radio:/dev/x"], "kind 'radio' is not one of"),
    (["udpin:127.0.0.1:99999"], "expected udpin:HOST:PORT"),
])
async def test_probe_failures_are_one_line(args: list[str], words: str) -> None:
    args = [a.format(port=free_port()) for a in args]
    code, out, err = await edge("drone", "probe", *args)
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and words in err and "Traceback" not in err, err


async def test_sim_drone_serves_until_sigterm() -> None:
    port = free_port()
    url = "rtsp://127.0.0.1:8554/sim-gimbal"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "edge", "sim", "drone", "--connection", f"tcp:127.0.0.1:{port}",
        "--home", f"{HOME[0]},{HOME[1]}", "--sysid", "3", "--camera", url, cwd=REPO,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    try:
        async with DroneLink(f"tcp:127.0.0.1:{port}") as link:
            async def heard() -> Any:
                while not (link.video_streams and 3 in link.vehicles
                           and link.vehicles[3].telemetry.lat is not None):
                    await asyncio.sleep(0.05)

            await asyncio.wait_for(heard(), 15)
            t = link.vehicles[3].telemetry
            assert abs(t.lat - HOME[0]) < 0.01 and t.mode == "GUIDED"  # type: ignore[operator]
            assert link.video_streams[0].uri == url
        proc.send_signal(signal.SIGTERM)
        out, err = await asyncio.wait_for(proc.communicate(), 5)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, err.decode()
    assert b"Traceback" not in err


def test_sim_flags_match_what_the_demo_passes() -> None:
    args = build_parser().parse_args(
        ["sim", "drone", "--connection", "tcp:127.0.0.1:5761", "--sysid", "2",
         "--home", "30.592,114.304", "--camera", "rtsp://127.0.0.1:8554/x"])
    assert (args.connection, args.sysid, args.home, args.camera) == (
        "tcp:127.0.0.1:5761", 2, (30.592, 114.304), "rtsp://127.0.0.1:8554/x")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["sim", "drone", "--home", "91,0"])


async def test_bench_mavlink_ends_with_json() -> None:
    code, out, err = await edge("bench", "mavlink", "--seconds", "5", "--repeat", "1",
                                "--cpu-seconds", "1", timeout=40)
    assert code == 0, err
    doc = json.loads(out.strip().splitlines()[-1])
    for key in ("ratio", "baseline_msgs_per_s", "edge_msgs_per_s", "cpu_pct_4x50hz"):
        assert isinstance(doc[key], int | float) and doc[key] > 0, key
    # The load it streams is the one asked for: 4 drones x 50 Hz x every streamed message.
    # How much of it arrived is the machine's business; the bench itself says when too
    # little did ("too few arrived"), so here only: some did.
    assert doc["cpu_expected_msgs_per_s"] == 4 * 50 * len(DEFAULT_RATES_HZ)
    assert doc["cpu_msgs_per_s"] > 0
