"""`edge demo` and its supervisor: summary, restarts, clean stop, no orphans."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from edge.bus import topics
from edge.bus.client import BusClient
from edge.bus.endpoints import Endpoints
from edge.bus.messages import CameraStatus
from edge.cli import build_parser
from edge.config import load_config
from edge.runtime.supervisor import SIM_CAMERAS, SIM_DRONES, Supervisor, plan
from tests.support import (
    demo_config_copy,
    eventually,
    eventually_sync,
    kill9,
    running_demo,
    wait_for_pid,
)

pytestmark = pytest.mark.timeout(90)

# Functional bound, not a timing check: a demo's cold start (interpreters, the simulators'
# first encodes) on a shared 2-core machine, with time to spare.
LIVE_S = 90.0


@pytest.fixture
def bus_only(tmp_path: Path) -> Path:
    """A vehicle with no devices: just the broker (fast, and no fixed ports)."""
    p = tmp_path / "bus-only.toml"
    p.write_text('vehicle = "t"\n[uplink]\nenabled = false\n')
    return p


def processes_in(runtime_dir: str) -> list[int]:
    """Pids of live processes started for a demo (found by their environment)."""
    needle = f"EDGE_RUNTIME_DIR={runtime_dir}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            env = (entry / "environ").read_bytes()
            state = (entry / "stat").read_text().split()[2]
        except OSError:
            continue
        if needle in env.split(b"\0") and state != "Z":
            pids.append(int(entry.name))
    return pids


async def bus_health(runtime_dir: Path) -> None:
    """Wait for the broker of the demo in `runtime_dir` to publish its health."""
    endpoints = Endpoints(pub=f"ipc://{runtime_dir}/bus-pub.sock",
                          sub=f"ipc://{runtime_dir}/bus-sub.sock",
                          router=f"ipc://{runtime_dir}/bus-router.sock", runtime_dir=runtime_dir)
    client = BusClient(endpoints, source="test")
    try:
        sub = client.subscribe(topics.svc_health("bus"))
        async with asyncio.timeout(30):
            await sub.recv()
    finally:
        await client.close()


def start_demo(config: Path, *extra: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, "-m", "edge", "demo", "--headless", "--config",
                             str(config), *extra], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    line = proc.stderr.readline()
    m = re.search(r"logs in (\S+)", line)
    if m is None:
        # Not a demo we can follow: stop it (SIGINT stops its children too) rather
        # than leave it running after the test.
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=15)
        raise AssertionError(f"edge demo did not say where its runtime dir is: {line!r}")
    return proc, m.group(1)


def test_headless_demo_prints_summary(bus_only: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "edge", "demo", "--headless", "--seconds", "6",
                        "--config", str(bus_only)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    bus = summary["services"]["bus"]
    assert bus["started"] and bus["restarts"] == 0 and bus["published"] >= 1
    assert not Path(summary["runtime_dir"]).exists()  # cleaned up


def test_two_demos_side_by_side_and_ctrl_c_leaves_nothing(bus_only: Path) -> None:
    a, dir_a = start_demo(bus_only)
    b, dir_b = start_demo(bus_only)
    try:
        assert dir_a != dir_b
        eventually_sync(lambda: processes_in(dir_a) and processes_in(dir_b), within=30,
                        what="both demos' processes")
        for d in (dir_a, dir_b):  # both brokers up and publishing health
            asyncio.run(bus_health(Path(d)))
        for proc in (a, b):
            proc.send_signal(signal.SIGINT)
        for proc in (a, b):
            out, _ = proc.communicate(timeout=15)
            assert proc.returncode == 0
            summary = json.loads(out.strip().splitlines()[-1])
            assert summary["services"]["bus"]["started"], summary
        assert processes_in(dir_a) == [] and processes_in(dir_b) == []
    finally:
        for proc in (a, b):
            proc.kill()


def test_killed_supervisor_takes_children_with_it(bus_only: Path) -> None:
    proc, rundir = start_demo(bus_only)
    try:
        eventually_sync(lambda: len(processes_in(rundir)) >= 1, within=30,
                        what="the demo's children")
        proc.kill()  # no chance to clean up: the kernel's PDEATHSIG must do it
        proc.wait(10)
        eventually_sync(lambda: processes_in(rundir) == [], within=30,
                        what="the children gone with their supervisor")
    finally:
        proc.kill()


async def test_crashed_child_is_restarted(bus_only: Path, runtime_dir: Path) -> None:
    sup = Supervisor(load_config(bus_only), bus_only, runtime_dir)
    await sup.start()
    try:
        bus = sup.children[0]
        await eventually(lambda: bus.health is not None, within=30, what="the broker's health")
        assert bus.proc is not None
        bus.proc.kill()
        await eventually(lambda: bus.starts >= 2 and bus.running, within=30,
                         what="the broker restarted")
        assert bus.summary()["restarts"] == 1
    finally:
        await sup.stop()
    assert processes_in(str(runtime_dir)) == []


def _proc_file(pid: int, name: str) -> list[bytes]:
    return Path(f"/proc/{pid}/{name}").read_bytes().split(b"\0")


async def test_a_child_can_be_started_behind_a_command_prefix(bus_only: Path,
                                                              runtime_dir: Path) -> None:
    # `env` stands for nsenter: a prefix that execs the child, so its pid is the child's
    prefix = ["env", "EDGE_TEST_PREFIXED=1"]
    sup = Supervisor(load_config(bus_only), bus_only, runtime_dir, prefixes={"bus": prefix})
    await sup.start()
    try:
        bus = sup.children[0]
        assert bus.argv[:2] == prefix and bus.argv[2:5] == [sys.executable, "-m", "edge"]
        await eventually(lambda: bus.health is not None, within=30, what="the broker's health")
        assert bus.proc is not None
        assert b"EDGE_TEST_PREFIXED=1" in _proc_file(bus.proc.pid, "environ")
        # the service itself, not `env`
        assert _proc_file(bus.proc.pid, "cmdline")[1:4] == [b"-m", b"edge", b"run"]
    finally:
        await sup.stop()
    assert processes_in(str(runtime_dir)) == []


def _flag_groups(argv: list[str]) -> list[dict[str, Any]]:
    """The devices an `edge sim cameras|drones` command line gives, as its parser reads it."""
    args = build_parser().parse_args(argv[argv.index("-m") + 2:])
    return list(args.devices)


def test_the_demo_runs_all_its_cameras_in_one_process_and_all_its_drones_in_one(
        tmp_path: Path) -> None:
    path = demo_config_copy(tmp_path)
    config = load_config(path)
    demo = config.demo
    assert len(demo.sim_cameras) > 1 and len(demo.sim_drones) > 1
    simulators = [c for c in plan(config, path) if c.kind == "simulator"]
    names = [c.name for c in simulators]
    assert names.count(SIM_CAMERAS) == 1 and names.count(SIM_DRONES) == 1, names
    assert not [n for n in names if n.startswith(("sim-camera@", "sim-drone@"))], names
    by_name = {c.name: c.argv for c in simulators}
    # Each camera keeps its URL (name and port), codec, profile and ONVIF options.
    cameras = _flag_groups(by_name[SIM_CAMERAS])
    want: list[dict[str, Any]] = []
    for cam in demo.sim_cameras:
        group: dict[str, Any] = {"name": cam.name, "port": cam.port, "codec": cam.codec,
                                 "profile": cam.profile}
        if cam.onvif_port is not None:
            group.update(onvif=cam.onvif_port, discovery_port=0)
            if cam.credentials is not None:
                group["onvif_credentials_file"] = str(cam.credentials.path(path.parent))
        want.append(group)
    assert cameras == want
    assert any("onvif" in c for c in cameras)  # the demo's ONVIF camera is among them
    drones = _flag_groups(by_name[SIM_DRONES])
    assert drones == [
        {"connection": d.connection, "sysid": d.sysid,
         **({"home": (d.home.lat, d.home.lon)} if d.home else {}),
         **({"camera": d.camera} if d.camera else {})} for d in demo.sim_drones]


@pytest.mark.timeout(180)
async def test_a_killed_cameras_simulator_is_restarted_with_every_camera_in_it(
        tmp_path: Path) -> None:
    wanted = ["north-gate", "east-yard"]
    path = demo_config_copy(tmp_path / "config", cameras=wanted, drones=[], links=[],
                            uplink=False)
    async with running_demo(path, tmp_path / "run") as demo:
        bus = BusClient(demo.endpoints, source="test")
        try:
            statuses = bus.subscribe(topics.CAM)

            async def live(after: dict[str, int]) -> dict[str, int]:
                """Each camera's reconnect count once it is live having reconnected more
                than `after` says (so live again, not still live)."""
                seen: dict[str, int] = {}
                while set(seen) != set(wanted):
                    msg = (await statuses.recv()).message
                    if isinstance(msg, CameraStatus) and msg.state == "live" and msg.fps > 0 \
                            and msg.reconnects > after.get(msg.camera_id, -1):
                        seen[msg.camera_id] = msg.reconnects
                return seen

            before = await asyncio.wait_for(live({}), LIVE_S)
            old = demo.pid_of("sim", "cameras")
            assert old is not None, "no sim-cameras process found by its environment"
            await kill9(old)
            await wait_for_pid(demo, "sim", "cameras", other_than=old, timeout=30)
            # Both cameras reconnected to the one restarted process.
            await asyncio.wait_for(live(before), LIVE_S)
        finally:
            await bus.close()
    assert demo.summary is not None
    services = demo.summary["services"]
    assert services[SIM_CAMERAS]["restarts"] == 1, services[SIM_CAMERAS]
    for camera in wanted:
        # The camera services rode it out: reconnected, not restarted.
        assert services[f"camera@{camera}"]["restarts"] == 0, services[f"camera@{camera}"]
