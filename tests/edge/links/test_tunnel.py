"""The WireGuard tunnel between the vehicle and the centre, and steering it between WANs.

A real two-WAN world (:class:`drivers.sim.link.world.World`, relayed by the emulator),
a real ``wireguard-go`` at each end, real UDP echoes through the tunnel. The library
works on the current network namespace, as the links service will (it runs in the
vehicle's); here both ends live in one process, so each end's calls run on an event
loop of their own, on a thread that has joined that end's namespace
(:class:`NamespaceLoop`): the TUN wireguard-go makes, the netlink sockets and the routes
all land there, and the test's own loop keeps relaying the WANs.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import signal
import struct
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast

import pytest

from drivers.sim.link import netns
from drivers.sim.link.emulator import Emulator
from drivers.sim.link.profile import LinkProfile, Outage
from drivers.sim.link.world import World, preflight
from edge.config.secrets import SecretRef
from edge.links.steering import Steering, SteeringError, Wan
from edge.links.wireguard import (
    SOCKET_DIR,
    PeerSpec,
    TunnelError,
    TunnelSpec,
    WireGuardTunnel,
    public_key_of,
    tunnel_preflight,
)
from tests.support import REPO, eventually, require, standing_still
from tests.support.links import Echo, Pinger, udp_in, until
from tests.support.namespace_loop import NamespaceLoop

T = TypeVar("T")

# Short delays and no loss keep each test a few seconds long, and make every lost echo
# one the switch lost.
LTE = LinkProfile("lte", rtt_ms=20, up_mbps=20, down_mbps=20)
SAT = LinkProfile("sat", rtt_ms=60, up_mbps=10, down_mbps=10)
PORT = 51820
FWMARK = 0xCA6C
CENTRE_INNER = "198.19.100.1"  # inside the tunnel; outside every WAN's and the service range
VEHICLE_INNER = "198.19.100.2"
ECHO_PORT = 7100
_SEQ = struct.Struct("!I")


def _need_tunnel() -> None:
    why = preflight() or tunnel_preflight()
    require(why is None, f"the tunnel cannot run here: {why}")


def _wg(*args: str, stdin: str | None = None) -> str:
    """`wg` (wireguard-tools): an independent key maker and reader of the tunnel's state."""
    return subprocess.run(["wg", *args], input=stdin, capture_output=True, text=True,
                          check=True, timeout=10).stdout.strip()


def _leftovers(ifnames: list[str]) -> list[str]:
    """wireguard-go processes and UAPI sockets still there for these interfaces."""
    found = [f"socket {path}" for name in ifnames
             if os.path.exists(path := f"{SOCKET_DIR}/{name}.sock")]
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if any(a.endswith(b"wireguard-go") for a in argv) and any(
                name.encode() in argv for name in ifnames):
            found.append(f"process {entry}: {b' '.join(argv).decode(errors='replace')}")
    return found


# -- the rig -------------------------------------------------------------------------------


@dataclass
class Rig:
    world: World
    emulator: Emulator
    vloop: NamespaceLoop
    cloop: NamespaceLoop
    vehicle: WireGuardTunnel
    centre: WireGuardTunnel
    steering: Steering
    transports: list[asyncio.DatagramTransport] = field(default_factory=list)
    pingers: list[Pinger] = field(default_factory=list)

    async def centre_endpoint(self) -> str | None:
        """The vehicle's address as the centre's WireGuard sees it now."""
        (peer,) = await self.cloop.run(self.centre.peers())
        return peer.endpoint[0] if peer.endpoint else None

    async def pinger(self) -> Pinger:
        """A 100 Hz echo through the tunnel, answered once."""
        self.transports.append(await udp_in(self.world.centre, Echo(), (CENTRE_INNER,
                                                                        ECHO_PORT)))
        pinger = Pinger(rate_hz=100)
        self.transports.append(await udp_in(self.world.vehicle, pinger, None,
                                          (CENTRE_INNER, ECHO_PORT)))
        pinger.start()
        self.pingers.append(pinger)
        await eventually(lambda: len(pinger.replies) >= 20, within=15,
                         what="echoes through the tunnel")
        return pinger

    def up_packets(self, wan: str) -> int:
        return self.emulator.counters()[wan]["up"].packets_in


@asynccontextmanager
async def tunnel_rig() -> AsyncIterator[Rig]:
    """Two WANs (lte with a gateway, sat without), the tunnel steered over lte, both ends up."""
    _need_tunnel()
    tag = secrets.token_hex(3)
    # the UAPI socket directory is shared by every namespace: the two ends' names differ
    ifnames = [f"wgv{tag}", f"wgc{tag}"]
    world = World([("lte", LTE), ("sat", SAT)])
    async with world:
        emulator = Emulator(world, seed=1)
        emulator.start()
        vloop, cloop = NamespaceLoop(world.vehicle), NamespaceLoop(world.centre)
        centre_key, vehicle_key = _wg("genkey"), _wg("genkey")
        # the centre has no endpoint for the vehicle: it learns it, and follows it
        centre = WireGuardTunnel(TunnelSpec(
            ifnames[1], centre_key, (f"{CENTRE_INNER}/24",), listen_port=PORT,
            peers=(PeerSpec(public_key_of(vehicle_key), (f"{VEHICLE_INNER}/32",),
                            name="vehicle"),)))
        vehicle = WireGuardTunnel(TunnelSpec(
            ifnames[0], vehicle_key, (f"{VEHICLE_INNER}/24",), fwmark=FWMARK,
            peers=(PeerSpec(public_key_of(centre_key), (f"{CENTRE_INNER}/32",),
                            endpoint=(world.service_address, PORT), name="centre"),)))
        lte, sat = world.wan("lte"), world.wan("sat")
        steering = Steering(FWMARK, [Wan("lte", "lte", lte.centre_address, lte.vehicle_address),
                                     Wan("sat", "sat", None, sat.vehicle_address)])
        rig = Rig(world, emulator, vloop, cloop, vehicle, centre, steering)
        try:
            await cloop.run(centre.open())
            await vloop.run(steering.open())
            await vloop.run(steering.steer("lte", world.service_address))
            await vloop.run(vehicle.open())
            yield rig
        finally:
            for pinger in rig.pingers:
                if pinger.task is not None:
                    pinger.task.cancel()
            for transport in rig.transports:
                transport.close()
            await vloop.run(vehicle.close())
            await vloop.run(steering.close())
            await cloop.run(centre.close())
            vloop.stop()
            cloop.stop()
            emulator.stop()
    assert _leftovers(ifnames) == []
    assert world.vehicle not in netns.listed() and world.centre not in netns.listed()


# -- the tests -----------------------------------------------------------------------------


async def test_tunnel_comes_up_and_peers_agrees_with_wg_show() -> None:
    async with tunnel_rig() as rig:
        await rig.pinger()
        lte = rig.world.wan("lte")
        for loop, tunnel in ((rig.vloop, rig.vehicle), (rig.cloop, rig.centre)):
            (peer,) = await loop.run(tunnel.peers())
            assert peer.latest_handshake is not None, f"{tunnel.ifname}: no handshake"
            assert peer.rx_bytes > 0 and peer.tx_bytes > 0
            # wg reads the same UAPI socket, from outside the namespace: an independent parser
            fields = _wg("show", tunnel.ifname, "dump").splitlines()[1].split("\t")
            wg_key, wg_endpoint, wg_handshake = fields[0], fields[2], int(fields[4])
            assert wg_key == peer.public_key
            assert peer.endpoint is not None
            assert wg_endpoint == f"{peer.endpoint[0]}:{peer.endpoint[1]}"
            assert wg_handshake == int(peer.latest_handshake)
        assert await rig.centre_endpoint() == lte.vehicle_address
        assert rig.vehicle.public_key == _wg("pubkey", stdin=str(rig.vehicle.spec.private_key))

        # the same interface name in another namespace would share the centre's UAPI socket
        clash = WireGuardTunnel(TunnelSpec(rig.centre.ifname, _wg("genkey")))
        with pytest.raises(TunnelError) as err:
            await rig.vloop.run(clash.open())
        message = str(err.value)
        assert "\n" not in message
        assert f"already served by process {rig.centre.pid}" in message, message
        assert clash.pid is None
        (peer,) = await rig.cloop.run(rig.centre.peers())  # the centre's tunnel is unharmed


async def test_steer_moves_a_running_echo_to_the_other_wan() -> None:
    async with tunnel_rig() as rig:
        pinger = await rig.pinger()
        sat = rig.world.wan("sat")
        assert rig.steering.active == "lte"
        old_port = await rig.vloop.run(rig.vehicle.listen_port())
        switched_at = pinger.next_seq
        # the switch as the links service makes it: the route, then a new local port (the
        # echo's replies still arriving over lte would otherwise pin the tunnel there)
        await rig.vloop.run(rig.steering.steer("sat", rig.world.service_address))
        new_port = await rig.vloop.run(rig.vehicle.rebind())
        assert rig.steering.active == "sat"
        assert new_port != old_port

        async def roamed() -> bool:
            return await rig.centre_endpoint() == sat.vehicle_address
        await until(roamed, within=10, what="the centre to see the vehicle on sat")
        (peer,) = await rig.cloop.run(rig.centre.peers())
        assert peer.endpoint == (sat.vehicle_address, new_port)
        await eventually(lambda: pinger.replies_since(switched_at) >= 100, within=15,
                         what="echoes after the switch")
        # the tunnel really left lte: nothing more goes up it while the echo goes on
        lte_up = rig.up_packets("lte")
        seq = pinger.next_seq
        await eventually(lambda: pinger.replies_since(seq) >= 50, within=10,
                         what="more echoes over sat")
        assert rig.up_packets("lte") == lte_up
        assert await rig.centre_endpoint() == sat.vehicle_address
        lost = await pinger.stop()
        print(f"\nsteer lte -> sat with a 100 Hz echo running: {lost} of "
              f"{pinger.next_seq} echoes lost")
        # Functional, not a timing: a switch that waited for a new handshake (5 s) or
        # bounced between the WANs would lose hundreds.
        assert lost < 100


async def test_cut_wan_then_steer_resumes_over_the_other() -> None:
    async with tunnel_rig() as rig:
        pinger = await rig.pinger()
        sat = rig.world.wan("sat")
        rig.emulator.add_outage("lte", Outage(rig.emulator.elapsed(), 600, "down"))
        await eventually(standing_still(lambda: len(pinger.replies)), within=10,
                         what="the echo to stop with lte cut", every=0.1)
        before = len(pinger.replies)
        steered_at = pinger.next_seq
        # no rebind: with lte dead nothing can pin the tunnel there, and the route change
        # alone moves it, through wireguard-go's route listener (which hears our change
        # only because Steering numbers its netlink requests above 65536)
        await rig.vloop.run(rig.steering.steer("sat", rig.world.service_address))
        await eventually(lambda: pinger.replies_since(steered_at) >= 50, within=15,
                         what="echoes over sat after the cut")
        assert await rig.centre_endpoint() == sat.vehicle_address
        assert len(pinger.replies) > before
        await pinger.stop()
        print(f"\nlte cut, then steered to sat: {pinger.lost_since(steered_at)} echoes "
              f"lost after the steer, {pinger.next_seq - len(pinger.replies)} in all")


@asynccontextmanager
async def vehicle_namespace() -> AsyncIterator[NamespaceLoop]:
    """A loop in a namespace of a one-WAN world, for what needs no traffic."""
    _need_tunnel()
    async with World([("lte", LTE)]) as world:
        loop = NamespaceLoop(world.vehicle)
        try:
            yield loop
        finally:
            loop.stop()


async def test_a_wireguard_go_that_fails_at_start_says_why_in_one_line() -> None:
    async with vehicle_namespace() as ns:
        # `lo` exists and is no TUN: wireguard-go cannot create its device and exits
        tunnel = WireGuardTunnel(TunnelSpec("lo", _wg("genkey")))
        try:
            with pytest.raises(TunnelError) as err:
                await ns.run(tunnel.open())
        finally:
            await ns.run(tunnel.close())
        assert str(err.value) == ("tunnel lo: wireguard-go exited (1): Failed to create TUN "
                                  "device: invalid argument")
        assert tunnel.pid is None
    assert _leftovers(["lo"]) == []


async def test_a_killed_wireguard_go_is_reaped_and_its_socket_removed() -> None:
    ifname = f"wgv{secrets.token_hex(3)}"
    async with vehicle_namespace() as ns:
        tunnel = WireGuardTunnel(TunnelSpec(ifname, _wg("genkey"), (f"{VEHICLE_INNER}/24",)))
        again = WireGuardTunnel(TunnelSpec(ifname, _wg("genkey")))
        try:
            await ns.run(tunnel.open())
            assert tunnel.pid is not None
            os.kill(tunnel.pid, signal.SIGKILL)  # no chance to remove its socket

            async def refused() -> str | None:
                try:
                    await ns.run(tunnel.peers())
                except TunnelError as e:
                    return str(e)
                return None
            message = await until(refused, within=10, what="peers() to fail")
            assert message.startswith(f"tunnel {ifname}") and "\n" not in message, message
            assert _leftovers([ifname]) == [f"socket {tunnel.socket_path}"]  # left by the kill
            await ns.run(tunnel.close())
            assert _leftovers([ifname]) == []  # ...and removed, as nobody serves it
            await ns.run(again.open())  # the name is free again
        finally:
            await ns.run(tunnel.close())
            await ns.run(again.close())
    assert _leftovers([ifname]) == []


def _ip(ns: str, *args: str) -> str:
    """`ip ...` in `ns`: an independent reader (and writer) of rules and routes."""
    return subprocess.run([*netns.exec_prefix(ns), "ip", *args], capture_output=True,
                          text=True, check=True, timeout=10).stdout


def _ip_json(ns: str, *args: str) -> list[dict[str, Any]]:
    return cast(list[dict[str, Any]], json.loads(_ip(ns, "-j", *args) or "[]"))


async def test_steering_errors_are_one_line_and_close_removes_only_ours() -> None:
    async with vehicle_namespace() as ns:
        world_rules = _ip_json(ns.name, "rule", "show")
        steering = Steering(FWMARK, [Wan("lte", "lte", "198.18.0.1", "198.18.0.2"),
                                     Wan("ghost", "nosuchif", None, "198.18.0.2"),
                                     Wan("far", "lte", "10.99.99.1", "198.18.0.2")])
        try:
            await ns.run(steering.open())
            rules = _ip_json(ns.name, "rule", "show")
            assert {"priority": 900, "src": "all", "fwmark": hex(FWMARK), "table": "200"
                    }.items() <= next(r for r in rules if r["priority"] == 900).items()
            with pytest.raises(SteeringError, match=r"^WAN 'ghost': interface 'nosuchif' "
                                                    r"does not exist$"):
                await ns.run(steering.steer("ghost", "198.19.0.1"))
            with pytest.raises(SteeringError) as err:  # a gateway that is not on the link
                await ns.run(steering.steer("far", "198.19.0.1"))
            assert str(err.value) == ("cannot steer 198.19.0.1/32 over 'far' (lte via "
                                      "10.99.99.1, from 198.18.0.2): Network is unreachable")
            assert steering.active is None
            await ns.run(steering.steer("lte", "198.19.0.0/24"))
            (route,) = _ip_json(ns.name, "route", "show", "table", "200")
            assert (route["dst"], route["gateway"], route["dev"], route["prefsrc"]) == (
                "198.19.0.0/24", "198.18.0.1", "lte", "198.18.0.2")
            # someone else's route in our table stays when we close
            _ip(ns.name, "route", "add", "192.0.2.0/24", "dev", "lte", "table", "200")
        finally:
            await ns.run(steering.close())
            await ns.run(steering.close())  # idempotent
        assert _ip_json(ns.name, "rule", "show") == world_rules
        assert [r["dst"] for r in _ip_json(ns.name, "route", "show", "table", "200")] == [
            "192.0.2.0/24"]
        assert steering.active is None


def test_a_malformed_key_is_one_line_naming_it() -> None:
    good = public_key_of(bytes(32))
    cases: list[tuple[TunnelSpec, str, str | bytes]] = [
        (TunnelSpec("wgv0", "not a key"), "private key of tunnel wgv0", "not a key"),
        (TunnelSpec("wgv0", "QUJD"), "private key of tunnel wgv0", "QUJD"),  # 3 bytes
        (TunnelSpec("wgv0", good, peers=(PeerSpec(good[:-2], ("10.0.0.1/32",),
                                                  name="centre"),)),
         "public key of peer 'centre'", good[:-2]),
        (TunnelSpec("wgv0", b"\xff" * 44), "private key of tunnel wgv0", b"\xff" * 44),
    ]
    for spec, named, value in cases:
        with pytest.raises(ValueError) as err:
            WireGuardTunnel(spec)
        message = str(err.value)
        assert message.startswith(named + ": not a WireGuard key"), message
        assert "\n" not in message
        assert str(value) not in message  # a key may be a secret: never quoted


def test_keys_come_from_secret_references(tmp_path: Path) -> None:
    # as `wg genkey > key` writes it (with its newline), read where it is used
    private = "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=\n"
    (tmp_path / "vehicle.key").write_text(private)
    ref = SecretRef.model_validate({"file": "vehicle.key"})
    tunnel = WireGuardTunnel(TunnelSpec("wgv0", ref.read_bytes(tmp_path)))
    assert tunnel.public_key == public_key_of(private.strip())
    assert tunnel.public_key == WireGuardTunnel(TunnelSpec("wgv0", ref.read_text(tmp_path))
                                                ).public_key
    assert "yAnz5" not in repr(tunnel.spec)  # a secret never shows in a repr or a log
    (tmp_path / "broken.key").write_text("yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3f\n")
    broken = SecretRef.model_validate({"file": "broken.key"})
    with pytest.raises(ValueError, match=r"^private key of tunnel wgv0: not a WireGuard key "
                                         r"\(expected 32 bytes once decoded from base64, "
                                         r"got 30\)$"):
        WireGuardTunnel(TunnelSpec("wgv0", broken.read_text(tmp_path)))


def test_bad_tunnel_and_steering_input_is_one_line() -> None:
    key = public_key_of(bytes(32))
    with pytest.raises(ValueError, match=r"^tunnel interface name 'a-name-too-long-for-linux'"):
        WireGuardTunnel(TunnelSpec("a-name-too-long-for-linux", key))
    with pytest.raises(ValueError, match=r"^peer 'centre': endpoint 'centre.example'"):
        WireGuardTunnel(TunnelSpec("wgv0", key, peers=(PeerSpec(
            key, ("10.0.0.1/32",), endpoint=("centre.example", PORT), name="centre"),)))
    wans = [Wan("lte", "lte", None, "198.18.0.2")]
    with pytest.raises(ValueError, match=r"^fwmark 0 must be"):
        Steering(0, wans)
    with pytest.raises(ValueError, match=r"^WAN 'lte': source address 'x' is not an IP"):
        Steering(FWMARK, [Wan("lte", "lte", None, "x")])
    steering = Steering(FWMARK, wans)
    with pytest.raises(ValueError, match=r"^no WAN named 'sat' \(known: lte\)$"):
        asyncio.run(steering.steer("sat", "198.19.0.1"))
    with pytest.raises(ValueError, match=r"^destination '198.19.0.1/8' is not"):
        asyncio.run(steering.steer("lte", "198.19.0.1/8"))
    with pytest.raises(ValueError, match=r"only IPv4 can be steered"):
        asyncio.run(steering.steer("lte", "2001:db8::1"))


async def test_without_wireguard_go_the_preflight_says_so(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # a PATH with nothing in it
    why = tunnel_preflight()
    assert why is not None and why.startswith("wireguard-go is not installed"), why
    assert tunnel_preflight("/opt/nowhere/wireguard-go") is not None
    tunnel = WireGuardTunnel(TunnelSpec(f"wgv{secrets.token_hex(3)}", public_key_of(
        bytes(32))))
    with pytest.raises(TunnelError) as err:
        await tunnel.open()
    assert str(err.value) == f"tunnel {tunnel.ifname}: {why}"
    assert tunnel.pid is None
    await tunnel.close()  # nothing to close: still fine


def test_without_cap_net_admin_the_preflight_says_so() -> None:
    require(shutil.which("wireguard-go"), "wireguard-go is not installed")
    argv = [sys.executable, "-c",
            "from edge.links.wireguard import tunnel_preflight; print(tunnel_preflight())"]
    if os.geteuid() == 0:  # root without CAP_NET_ADMIN: what a plain container gets
        argv = ["setpriv", "--bounding-set=-net_admin", *argv]
    out = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, check=True,
                         timeout=30).stdout.strip()
    assert out == "needs root (CAP_NET_ADMIN) to create the tunnel's TUN device"
