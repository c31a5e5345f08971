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

import pytest

from edge.bus import topics
from edge.bus.client import BusClient
from edge.bus.endpoints import Endpoints
from edge.config import load_config
from edge.runtime.supervisor import Supervisor
from tests.support import eventually, eventually_sync

pytestmark = pytest.mark.timeout(90)


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
