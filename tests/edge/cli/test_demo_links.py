"""`edge demo`'s links: emulated, with a local `edge centre`, as root; said why not otherwise.

The demos run on a small vehicle (the broker, two links, the links service) so that each
takes seconds. As root: the summary says the links were emulated and `edge centre` ran,
the centre saw the vehicle's tunnel (the links service, in the vehicle's namespace, with
the generated config and keys), and nothing of the world is left after the demo stops.
Without the capabilities (a root process stripped of them): the demo runs as before and
says once, on stderr, why the links are not emulated.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any, get_args

import pytest

from drivers.sim.link import netns
from drivers.sim.link.profile import PROFILES
from drivers.sim.link.world import preflight
from edge.bus import topics
from edge.bus.client import BusClient
from edge.cli.demo_config import EmulatedLink, TunnelPlan, toml_text, vehicle_data
from edge.config import load_config
from edge.config.demo import SimLinkProfile
from edge.links.wireguard import SOCKET_DIR, tunnel_preflight
from edge.services import SERVICES
from tests.support import REPO, DemoRun, eventually, require, run_edge, running_demo

pytestmark = pytest.mark.timeout(120)

# Without a capability: root, with nothing effective (as a plain user would be).
NO_CAPS = ["setpriv", "--inh-caps=-all", "--ambient-caps=-all", "--bounding-set=-all", "--"]

SMALL = """\
vehicle = "t"
[[links]]
id = "sat"
name = "Satellite"
kind = "satellite"
constrained = true
[[links]]
id = "lte"
name = "4G"
kind = "lte-private"
gateway = "192.0.2.1"
[link_policy]
prefer = ["lte", "sat"]
[uplink]
enabled = false
[demo]
sim_links = [{ link = "sat", profile = "geo" }, { link = "lte", profile = "lte" }]
"""


def _small(tmp_path: Path, text: str = SMALL) -> Path:
    path = tmp_path / "config" / "demo.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _absolute_files(value: Any, base: Path) -> Any:
    """Dumped config data with each secret reference's file taken from `base`."""
    if isinstance(value, dict):
        if set(value) == {"file", "credential"} and isinstance(value["file"], str):
            return {**value, "file": str(base / value["file"])}
        return {k: _absolute_files(v, base) for k, v in value.items()}
    if isinstance(value, list):
        return [_absolute_files(v, base) for v in value]
    return value


def test_the_demo_profiles_are_the_emulators() -> None:
    assert set(get_args(SimLinkProfile)) == set(PROFILES)


def test_the_services_config_names_the_emulated_links_and_keeps_the_rest(
        tmp_path: Path) -> None:
    original = tomllib.loads((REPO / "config" / "demo.toml").read_text())
    keys = tmp_path / "links"
    tunnel = TunnelPlan("edge-wgv-x", "edge-wgc-x", "198.19.100.2/24", "198.19.100.1/24",
                        51820, keys / "vehicle.key", keys / "vehicle.pub", keys / "centre.key",
                        keys / "centre.pub")
    data = vehicle_data(original, REPO / "config",
                        [EmulatedLink("sat", "sat", "198.18.0.2"),
                         EmulatedLink("lte", "lte", "198.18.1.2")],
                        "198.19.0.1", 7471, tunnel)
    path = tmp_path / "run" / "vehicle.toml"
    path.parent.mkdir()
    path.write_text(toml_text(data))
    assert tomllib.loads(path.read_text()) == data  # the writer writes what it was given
    config, before = load_config(path), load_config(REPO / "config" / "demo.toml")
    assert {link.id: (link.interface, link.source, link.gateway) for link in config.links} == {
        "sat": ("sat", "198.18.0.2", ""), "lte": ("lte", "198.18.1.2", "")}
    assert config.centre is not None and config.centre.tunnel is not None
    assert (config.centre.address, config.centre.probe_port) == ("198.19.0.1", 7471)
    assert config.centre.tunnel.centre_address == "198.19.100.1"
    assert config.centre.tunnel.private_key.path(path.parent) == keys / "vehicle.key"
    # written elsewhere, a relative secret still means the demo's own file
    assert config.uplink.token is not None and before.uplink.token is not None
    assert config.uplink.token.path(path.parent) == before.uplink.token.path(REPO / "config")
    assert config.uplink.token.read_text(path.parent) == before.uplink.token.read_text(
        REPO / "config")
    # the rest as written, with its relative secret files (a camera's credentials, a
    # simulator's) named by their absolute paths
    kept = {"cameras", "drones", "demo", "link_policy", "gb28181"}
    assert config.model_dump(include=kept) == _absolute_files(before.model_dump(include=kept),
                                                              REPO / "config")


async def test_a_sim_link_that_names_no_link_is_one_line_and_exit_2(tmp_path: Path) -> None:
    path = _small(tmp_path, SMALL.replace('{ link = "lte"', '{ link = "4g"'))
    code, out, err = await run_edge("demo", "--headless", "--seconds", "1", "--config",
                                    str(path))
    assert code == 2, err
    assert err.strip() == (f'{path}:17: demo.sim_links[1].link: no link "4g" '
                           "(links: sat, lte)"), err
    assert out == ""


async def test_without_root_the_demo_runs_and_says_once_why_the_links_are_not_emulated(
        tmp_path: Path) -> None:
    prefix: list[str] = []
    if os.geteuid() == 0:
        require(shutil.which("setpriv"), "setpriv (util-linux) is not installed")
        prefix = NO_CAPS
    path = _small(tmp_path)
    async with running_demo(path, tmp_path / "run", prefix=prefix) as demo:
        await eventually(lambda: "links not emulated" in demo.output(), within=30,
                         what="the demo's note on the links")
        await _bus_heard(demo)
    assert demo.summary is not None
    notes = [line for line in demo.output().splitlines() if "links not emulated" in line]
    assert notes == ["edge demo: links not emulated: needs root (CAP_NET_ADMIN and "
                     "CAP_SYS_ADMIN) to create network namespaces and TUN devices; run it "
                     "with sudo"], demo.output()
    assert demo.summary["links"] == {"emulated": False, "why": notes[0].split(": ", 2)[2]}
    assert "centre" not in demo.summary["services"]
    assert demo.summary["services"]["bus"]["started"]


_EMULATED = re.compile(r"^edge demo: links emulated: .* in netns (?P<centre>edge-centre-\S+); "
                       r"vehicle netns (?P<vehicle>edge-vehicle-\S+)$", re.M)


async def _bus_heard(demo: DemoRun) -> None:
    """Until the demo's broker has published its health: the demo is running as before."""
    client = BusClient(demo.endpoints, source="test")
    try:
        sub = client.subscribe(topics.svc_health("bus"))
        async with asyncio.timeout(30):  # a demo's start on a loaded machine: generous
            await sub.recv()
    finally:
        await client.close()


def _sockets_left(ifnames: list[str]) -> list[str]:
    return [name for name in ifnames if os.path.exists(f"{SOCKET_DIR}/{name}.sock")]


async def _runs_in(demo: DemoRun, ns: str, *argv: str) -> None:
    """Until the demo's child with `argv` runs in network namespace `ns` (nsenter, which
    starts it, is in ours until it has joined the namespace and exec'd the child)."""
    inode = os.stat(netns.path_of(ns)).st_ino

    def joined() -> bool:
        pid = demo.pid_of(*argv)
        try:
            return pid is not None and os.stat(f"/proc/{pid}/ns/net").st_ino == inode
        except OSError:
            return False

    # a Python start on a loaded 2-core machine takes seconds: generous, not a timing
    await eventually(joined, within=30, what=f"{' '.join(argv)} in netns {ns}")


async def test_as_root_the_links_are_emulated_to_a_local_edge_centre_and_taken_down(
        tmp_path: Path) -> None:
    why = preflight() or tunnel_preflight()
    require(why is None, f"the emulated links or their tunnel cannot run here: {why}")
    path = _small(tmp_path)
    async with running_demo(path, tmp_path / "run") as demo:
        m = await eventually(lambda: _EMULATED.search(demo.output()), within=30,
                             what="the demo's note on the links")
        assert m is not None
        centre_ns, vehicle_ns = m["centre"], m["vehicle"]
        assert {centre_ns, vehicle_ns} <= set(netns.listed())
        centre_config = tomllib.loads((demo.runtime_dir / "links" / "centre.toml").read_text())
        vehicle_config = load_config(demo.runtime_dir / "vehicle.toml")
        assert vehicle_config.centre is not None and vehicle_config.centre.tunnel is not None
        # edge centre runs in the centre's namespace; the links service in the vehicle's
        await _runs_in(demo, centre_ns, "edge", "centre", "--config")
        if "links" in SERVICES:
            await _runs_in(demo, vehicle_ns, "edge", "run", "links")
            # its tunnel reaches the centre: the keys, addresses and namespaces fit. The
            # vehicle's keepalive is 5 s and a satellite round trip 0.6 s: generous
            await eventually(lambda: "edge centre: vehicle t now at 198.18." in
                             demo.log("centre"), within=60,
                             what="edge centre to see the vehicle's tunnel")
        ifnames = [centre_config["tunnel"]["interface"],
                   vehicle_config.centre.tunnel.interface]
    summary = demo.summary
    assert summary is not None
    assert summary["links"]["emulated"] is True, summary["links"]
    assert sorted(summary["links"]["wans"]) == ["lte", "sat"]
    assert summary["links"]["wans"]["sat"]["profile"] == "geo"
    assert summary["links"]["namespaces"] == {"vehicle": vehicle_ns, "centre": centre_ns}
    centre = summary["services"]["centre"]
    assert centre["started"] and centre["kind"] == "simulator" and centre["last_exit"] == 0
    # nothing of the world is left: namespaces, and wireguard-go (which removes its socket
    # when it stops cleanly: a SIGKILLed one, even by the test's own clean-up, leaves it)
    assert centre_ns not in netns.listed() and vehicle_ns not in netns.listed()
    assert _sockets_left(ifnames) == []
    note = [line for line in demo.output().splitlines() if "links emulated" in line]
    assert len(note) == 1 and f"netns {centre_ns}" in note[0], demo.output()


def test_the_demo_runs_without_sim_links_as_before(tmp_path: Path) -> None:
    # no [demo] sim_links: no note, no centre, and the summary says why
    path = _small(tmp_path, SMALL.rsplit("[demo]", 1)[0])
    r = subprocess.run([sys.executable, "-m", "edge", "demo", "--headless", "--seconds", "2",
                        "--config", str(path)], capture_output=True, text=True, timeout=60,
                       cwd=REPO)
    assert r.returncode == 0, r.stderr
    assert "links emulated" not in r.stderr and "links not emulated" not in r.stderr
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary["links"] == {"emulated": False,
                                "why": "the config emulates no links ([demo] sim_links)"}
    assert "centre" not in summary["services"]

