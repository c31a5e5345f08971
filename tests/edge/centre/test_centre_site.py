"""The centre's site (`edge centre`): its probe responder, its end of the vehicles' tunnels.

Without root: the site answers a real `LinkProber` over loopback; `edge centre` stripped
of its capabilities still answers and says why its tunnel cannot run; config problems
are one line and exit 2. With root: `edge centre` as a real process in the centre
namespace of an emulated world, a vehicle's `WireGuardTunnel` in the vehicle's: the
handshake, an echo through the tunnel, probes across the WAN, and the endpoint the
centre prints, before and after the vehicle moves.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, cast

import pytest

from drivers.sim.link import netns
from drivers.sim.link.emulator import Emulator
from drivers.sim.link.profile import LinkProfile
from drivers.sim.link.world import World, preflight
from edge.centre.site import CentreSite
from edge.config.centre_site import CentreSiteConfig
from edge.config.loader import load_as, load_config
from edge.links.prober import LinkProber
from edge.links.wireguard import (
    SOCKET_DIR,
    PeerSpec,
    TunnelSpec,
    WireGuardTunnel,
    encode_key,
    public_key_of,
    tunnel_preflight,
)
from tests.support import REPO, eventually, free_port, require, run_edge
from tests.support.namespace_loop import NamespaceLoop

# Short and lossless: every lost echo would be a fault, and each test stays seconds long.
WAN = LinkProfile("lte", rtt_ms=20, up_mbps=20, down_mbps=20)
CENTRE_INNER = "198.19.100.1"  # inside the tunnel: outside every WAN's and the service range
VEHICLE_INNER = "198.19.100.2"
TUNNEL_PORT = 51820
PROBE_PORT = 7471
ECHO_PORT = 7100
# Without a capability: the same process, as root, with nothing effective.
NO_CAPS = ["setpriv", "--inh-caps=-all", "--ambient-caps=-all", "--bounding-set=-all", "--"]


def _key_pair() -> tuple[str, str]:
    """(private, public), as `wg genkey | wg pubkey` would make them."""
    private = encode_key(os.urandom(32))  # any 32 bytes: X25519 clamps them where used
    return private, public_key_of(private)


def _write_centre_config(path: Path, listen: str, probe_port: int, *, ifname: str = "edge-wgc",
                         vehicle_public: str | None = None, extra: str = "") -> Path:
    centre_private, _ = _key_pair()
    (path.parent / "centre.key").write_text(centre_private + "\n")
    (path.parent / "cv-01.pub").write_text((vehicle_public or _key_pair()[1]) + "\n")
    path.write_text(f'listen = "{listen}"\nprobe_port = {probe_port}\n{extra}'
                    f'[tunnel]\ninterface = "{ifname}"\naddress = "{CENTRE_INNER}/24"\n'
                    f'port = {TUNNEL_PORT}\nprivate_key = {{ file = "centre.key" }}\n'
                    f'[[vehicles]]\nid = "cv-01"\ntunnel_address = "{VEHICLE_INNER}"\n'
                    f'public_key = {{ file = "cv-01.pub" }}\n')
    return path


@contextlib.contextmanager
def _output_files(*paths: Path) -> Iterator[list[BinaryIO]]:
    """Files for a child's output, closed here once it has them: files, not pipes, so
    nobody has to read them while the test runs."""
    files: list[BinaryIO] = [open(p, "wb") for p in paths]  # noqa: SIM115 (closed below)
    try:
        yield files
    finally:
        for f in files:
            f.close()


def _wireguard_go_pid(ifname: str) -> int | None:
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(a.endswith(b"wireguard-go") for a in argv) and ifname.encode() in argv:
            return int(entry.name)
    return None


def _wireguard_go_for(ifnames: list[str]) -> list[str]:
    """wireguard-go processes and UAPI sockets still there for these interfaces."""
    found = [f"socket {p}" for name in ifnames
             if os.path.exists(p := f"{SOCKET_DIR}/{name}.sock")]
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(a.endswith(b"wireguard-go") for a in argv) and any(
                n.encode() in argv for n in ifnames):
            found.append(f"process {entry.name}")
    return found


# -- without root ----------------------------------------------------------------------------


async def test_the_responder_answers_a_real_prober_over_loopback() -> None:
    config = CentreSiteConfig(listen="127.0.0.1", probe_port=free_port(socket.SOCK_DGRAM))
    site = CentreSite(config, Path("."))
    await site.start()
    prober = LinkProber("lo", site.responder.address, source="127.0.0.1", rate_hz=20)
    prober.start()
    try:
        await eventually(lambda: prober.snapshot().received >= 10, within=10,
                         what="ten probe replies")
        assert prober.snapshot().state == "up"
        status = await site.status()
        assert status["probe"]["reflected"] >= 10 and status["probe"]["malformed"] == 0
        assert status["tunnel"] is None and status["vehicles"] == {}
        assert site.describe()[0] == f"probe responder on 127.0.0.1:{config.probe_port} (udp)"
    finally:
        await prober.close()
        await site.close()


async def test_edge_centre_without_capabilities_answers_probes_and_says_why_no_tunnel(
        tmp_path: Path, runtime_dir: Path) -> None:
    # systemd's side of the notify socket (a short path: unix socket paths are at most 107)
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(runtime_dir / "notify.sock"))
    notify.setblocking(False)
    env = dict(os.environ, NOTIFY_SOCKET=str(runtime_dir / "notify.sock"),
               WATCHDOG_USEC="200000")
    prefix: list[str] = []
    if os.geteuid() == 0:
        require(shutil.which("setpriv"), "setpriv (util-linux) is not installed")
        prefix = NO_CAPS
    port = free_port(socket.SOCK_DGRAM)
    config = _write_centre_config(tmp_path / "centre.toml", "127.0.0.1", port)
    err_path = tmp_path / "centre.err"
    with _output_files(err_path) as (err,):
        proc = await asyncio.create_subprocess_exec(
            *prefix, sys.executable, "-m", "edge", "centre", "--config", str(config),
            cwd=REPO, env=env, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=err)
    prober = LinkProber("lo", ("127.0.0.1", port), source="127.0.0.1", rate_hz=20)
    try:
        # a Python start on a loaded 2-core machine takes seconds: generous, not a timing
        await eventually(lambda: "cannot run here" in err_path.read_text(), within=30,
                         what="edge centre to say what it serves")
        prober.start()
        await eventually(lambda: prober.snapshot().received >= 5, within=10,
                         what="replies from edge centre")
        proc.send_signal(signal.SIGTERM)
        out, _ = await asyncio.wait_for(proc.communicate(), 15)
    finally:
        await prober.close()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    stderr = err_path.read_text()
    assert proc.returncode == 0, stderr
    assert "tunnel edge-wgc cannot run here: needs root (CAP_NET_ADMIN)" in stderr, stderr
    assert "Traceback" not in stderr
    status = json.loads(out.decode().strip().splitlines()[-1])
    assert status["probe"]["reflected"] >= 5
    assert status["tunnel"]["running"] is False and "CAP_NET_ADMIN" in status["tunnel"]["why"]
    assert status["vehicles"]["cv-01"]["endpoint"] is None
    said: list[str] = []
    with contextlib.suppress(BlockingIOError):
        while True:
            said += notify.recv(4096).decode().splitlines()
    notify.close()
    assert said[0] == "READY=1" and said[1].startswith("STATUS=answering probes on 127.0.0.1")
    assert "WATCHDOG=1" in said and said[-1] == "STOPPING=1", said


def _no_key_file(d: Path) -> None:
    (d / "centre.key").unlink()


def _not_a_key(d: Path) -> None:
    (d / "cv-01.pub").write_text("hello\n")


def _unknown_key(d: Path) -> None:
    path = d / "centre.toml"
    path.write_text('listn = "127.0.0.1"\n' + path.read_text())


def _outside(d: Path) -> None:
    path = d / "centre.toml"
    path.write_text(path.read_text().replace(f'"{VEHICLE_INNER}"', '"198.19.200.2"'))


@pytest.mark.parametrize(("break_it", "listen", "expected"), [
    (_unknown_key, "127.0.0.1", "centre.toml:1: listn: unknown key"),
    (_no_key_file, "127.0.0.1",
     "centre.toml:7: tunnel.private_key: {d}/centre.key: cannot read secret: No such file"),
    (_not_a_key, "127.0.0.1", "centre.toml:11: vehicles[0].public_key: {d}/cv-01.pub: "
                              "not a key: not a WireGuard key"),
    (_outside, "127.0.0.1", "centre.toml:10: vehicles[0].tunnel_address: 198.19.200.2 is "
                            "outside the tunnel's network 198.19.100.0/24"),
    # TEST-NET-1: an address no machine here has (nothing is sent to it)
    (None, "192.0.2.1", "centre.toml:1: listen: 192.0.2.1 is not an address of this machine"),
], ids=["unknown-key", "no-key-file", "not-a-key", "address-outside", "listen-not-here"])
async def test_config_problems_are_one_line_and_exit_2(
        tmp_path: Path, break_it: Callable[[Path], None] | None, listen: str,
        expected: str) -> None:
    config = _write_centre_config(tmp_path / "centre.toml", listen,
                                  free_port(socket.SOCK_DGRAM))
    if break_it is not None:
        break_it(tmp_path)
    code, out, err = await run_edge("centre", "--config", str(config))
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith(str(config)), err
    assert expected.format(d=tmp_path) in err, err
    assert out == ""


def test_the_example_is_the_far_end_of_the_vehicle_example() -> None:
    centre = load_as(CentreSiteConfig, REPO / "config" / "centre.example.toml")
    vehicle = load_config(REPO / "config" / "vehicle.example.toml")
    assert vehicle.centre is not None and vehicle.centre.tunnel is not None
    assert centre.tunnel is not None
    assert centre.listen == vehicle.centre.address
    assert centre.probe_port == vehicle.centre.probe_port
    assert centre.tunnel.port == vehicle.centre.tunnel.port
    assert centre.tunnel.address.split("/")[0] == vehicle.centre.tunnel.centre_address
    (cv01,) = centre.vehicles
    assert cv01.id == vehicle.vehicle
    assert cv01.tunnel_address == vehicle.centre.tunnel.address.split("/")[0]


# -- with root: the real process in an emulated world ----------------------------------------


class _Echo(asyncio.DatagramProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.transport.sendto(data, addr)


class _Replies(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.received: set[bytes] = set()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.received.add(data)

    def error_received(self, exc: Exception) -> None:
        pass  # before the handshake: no route yet, the next one goes through


async def _udp_in(ns: str, protocol: asyncio.DatagramProtocol, *,
                  bind: tuple[str, int] | None = None,
                  connect: tuple[str, int] | None = None) -> asyncio.DatagramTransport:
    sock = netns.socket_in(ns)
    if bind:
        sock.bind(bind)
    if connect:
        sock.connect(connect)
    sock.setblocking(False)
    transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
        lambda: protocol, sock=sock)
    return transport


async def _echoes(transport: asyncio.DatagramTransport, replies: _Replies, count: int) -> None:
    """Send numbered datagrams every 50 ms until `count` of them have come back."""
    n = 0

    def enough() -> bool:
        nonlocal n
        transport.sendto(f"echo {n}".encode())
        n += 1
        return len(replies.received) >= count

    await eventually(enough, within=20, what=f"{count} echoes through the tunnel")


@pytest.mark.timeout(90)
async def test_edge_centre_in_the_centre_namespace_is_the_vehicle_tunnels_far_end(
        tmp_path: Path) -> None:
    why = preflight() or tunnel_preflight()
    require(why is None, f"the emulated world or the tunnel cannot run here: {why}")
    tag = secrets.token_hex(3)
    ifnames = [f"wgc{tag}", f"wgv{tag}"]
    vehicle_private, vehicle_public = _key_pair()
    world = World([("lte", WAN)])
    async with world:
        lte = world.wan("lte")
        emulator = Emulator(world, seed=1)
        emulator.start()
        config = _write_centre_config(tmp_path / "centre.toml", world.service_address,
                                      PROBE_PORT, ifname=ifnames[0],
                                      vehicle_public=vehicle_public)
        centre_public = public_key_of((tmp_path / "centre.key").read_text())
        out_path, err_path = tmp_path / "centre.out", tmp_path / "centre.err"
        with _output_files(out_path, err_path) as (out, err):
            proc = world.run_in(world.centre, [sys.executable, "-m", "edge", "centre",
                                               "--config", str(config)],
                                cwd=REPO, stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        vloop = NamespaceLoop(world.vehicle)
        vehicle = WireGuardTunnel(TunnelSpec(
            ifnames[1], vehicle_private, (f"{VEHICLE_INNER}/24",),
            peers=(PeerSpec(centre_public, (f"{CENTRE_INNER}/32",),
                            endpoint=(world.service_address, TUNNEL_PORT),
                            persistent_keepalive_s=1, name="centre"),)))
        transports: list[asyncio.DatagramTransport] = []
        prober = LinkProber("lte", (world.service_address, PROBE_PORT),
                            source=lte.vehicle_address, interface="lte", rate_hz=20,
                            sock_factory=lambda family: netns.socket_in(world.vehicle, family))

        def said(text: str) -> bool:
            return text in err_path.read_text()

        try:
            # a Python start on a loaded 2-core machine takes seconds: generous, not a timing
            await eventually(lambda: said(f"tunnel {ifnames[0]} {CENTRE_INNER}/24")
                             or proc.poll() is not None, within=30,
                             what="edge centre to serve")
            assert proc.poll() is None, err_path.read_text()
            # a second centre on the same tunnel interface cannot start its tunnel: one line
            second = tmp_path / "second.toml"
            second.write_text(config.read_text().replace(f"probe_port = {PROBE_PORT}",
                                                         f"probe_port = {PROBE_PORT + 1}"))
            other = world.run_in(world.centre, [sys.executable, "-m", "edge", "centre",
                                                "--config", str(second)],
                                 cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE)
            _, other_err = await asyncio.to_thread(other.communicate, timeout=30)
            assert other.returncode == 1, other_err
            (line,) = other_err.decode().splitlines()
            assert line.startswith(f"edge: centre: tunnel {ifnames[0]}: "), line
            assert f"already served by process {_wireguard_go_pid(ifnames[0])}" in line, line
            # probes from the vehicle's WAN address, across the emulator, to the responder
            prober.start()
            await eventually(lambda: prober.snapshot().received >= 5, within=15,
                             what="probe replies from edge centre across the WAN")

            await vloop.run(vehicle.open())
            transports.append(await _udp_in(world.centre, _Echo(),
                                            bind=(CENTRE_INNER, ECHO_PORT)))
            replies = _Replies()
            transports.append(await _udp_in(world.vehicle, replies,
                                            connect=(CENTRE_INNER, ECHO_PORT)))
            await _echoes(transports[-1], replies, 10)
            port = await vloop.run(vehicle.listen_port())
            await eventually(lambda: said(f"vehicle cv-01 now at {lte.vehicle_address}:{port}"),
                             within=10, what="edge centre to print the vehicle's endpoint")

            # the vehicle moves (a new port, as a WAN switch makes it): the centre follows
            new_port = await vloop.run(vehicle.rebind())
            await eventually(lambda: said(f"vehicle cv-01 now at {lte.vehicle_address}:"
                                          f"{new_port} (was {lte.vehicle_address}:{port})"),
                             within=10, what="edge centre to print the vehicle's new endpoint")
            await _echoes(transports[-1], replies, len(replies.received) + 5)

            proc.send_signal(signal.SIGTERM)
            code = await asyncio.to_thread(proc.wait, 15)
            assert code == 0, err_path.read_text()
        finally:
            await prober.close()
            for transport in transports:
                transport.close()
            await vloop.run(vehicle.close())
            vloop.stop()
            emulator.stop()
    stderr = err_path.read_text()
    assert "Traceback" not in stderr, stderr
    status: dict[str, Any] = json.loads(out_path.read_text().strip().splitlines()[-1])
    seen = status["vehicles"]["cv-01"]
    assert seen["endpoint"] == f"{lte.vehicle_address}:{new_port}"
    assert seen["roams"] == 1 and seen["latest_handshake"] is not None
    assert seen["rx_bytes"] > 0 and seen["tx_bytes"] > 0
    assert status["probe"]["reflected"] >= prober.snapshot().received
    assert _wireguard_go_for(ifnames) == []
    assert world.vehicle not in netns.listed() and world.centre not in netns.listed()

