"""The failover bench's world: a vehicle and a centre on two emulated WANs, and what it watches.

Built from the demo's own parts (:class:`edge.cli.demo_links.DemoLinks`): the link
emulator's world with one WAN per link (`lte`, preferred, and `sat`), relayed by the
emulator on a thread of this process, WireGuard keys, and the generated vehicle and
centre configs. Then, as production runs them:

- in the centre's namespace, ``edge centre`` (probe responder, the tunnel's far end);
- in the vehicle's namespace, ``edge run links`` (probes per WAN, the tunnel steered by
  the policy), a simulated camera (``edge sim camera``, 30 fps, its encoded loop), its
  ``camera@`` service, and ``edge run uplink`` listening on the vehicle's address
  *inside the tunnel*, so the centre reaches it through the tunnel only. The uplink
  starts once the tunnel is up: before, that address does not exist;
- the broker in a thread of this process, on ipc sockets (files reach every namespace).

What it watches, from the outside:

- :class:`TunnelCapture`: every WireGuard packet from the vehicle as it arrives on
  each of the centre's WAN interfaces (a packet socket in the centre's namespace), so
  "the first tunnel packet at the centre over the other WAN" is read off the wire;
- :class:`LinkWatch`: the links service's ``link/<id>/status`` messages (which WAN
  carries the tunnel, which is down), with their arrival times;
- :class:`Telemetry`: a 10 Hz, telemetry-sized, numbered UDP stream from the vehicle's
  namespace to the centre's tunnel address (through the tunnel), losses counted;
- :class:`ViewerRun`: the WHEP viewer process in the centre's namespace
  (:mod:`edge.bench.failover_viewer`), its lines read as they come.

All times are ``time.monotonic()``, which every process on this host reads from one
clock.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import json
import re
import socket
import struct
import sys
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

from drivers.sim.link import netns
from drivers.sim.link.profile import PROFILES, LinkProfile, Outage
from drivers.sim.link.world import World
from edge.bench.latency import CAMERA, STARTUP_TIMEOUT_S, TOKEN, BenchBus, Processes
from edge.bench.latency_link import VehicleApi, cannot_run
from edge.bus import topics
from edge.bus.client import BusClient, Subscription
from edge.bus.messages import LinkStatus
from edge.cli.demo_config import TunnelPlan, toml_text
from edge.cli.demo_links import VEHICLE_TUNNEL_ADDRESS, DemoLinks
from edge.config import load_config
from edge.links.wireguard import tunnel_preflight
from edge.runtime.processes import stop_process

#: the vehicle's links, the preferred one first
LINKS = ("lte", "sat")
RTSP_PORT = 8554  # the vehicle's namespace is new: nothing else listens there
HTTP_PORT = 8800
TELEMETRY_PORT = 7300
TELEMETRY_HZ = 10.0
#: a drone's telemetry message on the bus is about this size
TELEMETRY_BYTES = 200
#: small, so that each repeat can fail back before the next
FAILBACK_AFTER_S = 2.0
# The uplink's own rule for `auto`: a round trip this long is a geostationary hop.
GEO_RTT_MS = 300
# Generous bounds that only keep a broken run from hanging (a shared 2-core machine
# starting five processes is slow, not wrong).
TUNNEL_WITHIN_S = 30.0
POSTED_WITHIN_S = 60.0
STOP_WITHIN_S = 20.0

_ETH_P_IP = 0x0800
_PACKET_OUTGOING = 4
_HEADERS = 64  # bytes of each captured packet kept: its IP and UDP headers
_TEL = struct.Struct("!IQ")  # sequence number, send time (ns)
_ROAM = re.compile(r"vehicle (?P<vehicle>\S+) now at (?P<address>[0-9.]+):\d+")


def cannot_build() -> str | None:
    """None if this process can build the world, the tunnel included; else why not."""
    return cannot_run() or tunnel_preflight()


def _kind(profile: LinkProfile) -> str:
    return "lte-private" if profile.name.startswith("lte") else "satellite"


def vehicle_config(runtime: Path, profiles: dict[str, LinkProfile], listen: str) -> Path:
    """The bench vehicle's config before the demo's links fill in interfaces and the centre:
    one camera (main and sub), the two links, the policy, the uplink on `listen`."""
    links = []
    for link, profile in profiles.items():
        links.append({
            "id": link, "name": f"{link} (emulated {profile.name})", "kind": _kind(profile),
            "capacity_kbps": round(profile.up_mbps * 1000), "rtt_ms": round(profile.rtt_ms),
            "constrained": profile.rtt_ms >= GEO_RTT_MS})
    worst_rtt = max(p.rtt_ms for p in profiles.values())
    data: dict[str, Any] = {
        "vehicle": "bench",
        "bus": {"runtime_dir": str(runtime)},
        "cameras": [{"id": CAMERA, "name": "Bench",
                     "main": f"rtsp://127.0.0.1:{RTSP_PORT}/{CAMERA}/main",
                     "sub": f"rtsp://127.0.0.1:{RTSP_PORT}/{CAMERA}/sub"}],
        "links": links,
        "link_policy": {"prefer": list(profiles), "failback_after_s": FAILBACK_AFTER_S},
        # NACK history covers two worst round trips; queueing adds to the link's own
        "uplink": {"listen": listen, "token": {"file": "uplink.token"},
                   "worst_rtt_ms": max(1000, round(2 * worst_rtt))},
        "recorder": {"path": "rec"},
        "demo": {"sim_links": [{"link": link, "profile": p.name}
                               for link, p in profiles.items()]},
    }
    path = runtime / "bench.toml"
    path.write_text(toml_text(data))
    return path


# -- what is watched ------------------------------------------------------------------------


class TunnelCapture:
    """Arrival times of the vehicle's WireGuard packets on each of the centre's WANs.

    A packet socket in the centre's namespace sees every packet its interfaces receive;
    a packet counts when it is UDP to the centre's tunnel port from the vehicle's
    address on the WAN it arrived by. Read on a thread of its own: a few hundred
    packets a second, and the event loop's lateness never enters the times.
    """

    def __init__(self, ns: str, vehicle_addresses: dict[str, str], port: int) -> None:
        self.addresses = dict(vehicle_addresses)  # WAN (its interface's name) -> vehicle's
        self.port = port
        self.arrivals: dict[str, list[float]] = {wan: [] for wan in vehicle_addresses}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._sock = netns.socket_in(ns, socket.AF_PACKET, socket.SOCK_DGRAM,
                                     socket.htons(_ETH_P_IP))
        self._sock.settimeout(0.2)
        self._thread = threading.Thread(target=self._read, name="tunnel-capture", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                data, addr = self._sock.recvfrom(_HEADERS)
            except TimeoutError:
                continue
            except OSError:
                return
            now = time.monotonic()
            wan, pkttype = addr[0], addr[2]
            expected = self.addresses.get(wan)
            if expected is None or pkttype == _PACKET_OUTGOING or len(data) < 28:
                continue
            ihl = (data[0] & 0x0F) * 4
            if data[0] >> 4 != 4 or data[9] != socket.IPPROTO_UDP or len(data) < ihl + 4:
                continue
            if socket.inet_ntoa(data[12:16]) != expected:
                continue
            if int.from_bytes(data[ihl + 2:ihl + 4], "big") != self.port:
                continue
            with self._lock:
                self.arrivals[wan].append(now)

    def first_after(self, wan: str, t: float) -> float | None:
        """When the first tunnel packet after `t` arrived over `wan` (None: none yet)."""
        with self._lock:
            times = self.arrivals[wan]
            i = bisect.bisect_right(times, t)
            return times[i] if i < len(times) else None

    def count(self, wan: str, start: float, end: float = float("inf")) -> int:
        with self._lock:
            times = self.arrivals[wan]
            return bisect.bisect_left(times, end) - bisect.bisect_right(times, start)

    async def wait_first_after(self, wan: str, t: float, within: float) -> float:
        deadline = time.monotonic() + within
        while (found := self.first_after(wan, t)) is None:
            if time.monotonic() > deadline:
                raise RuntimeError(f"no tunnel packet reached the centre over {wan} within "
                                   f"{within:g} s")
            await asyncio.sleep(0.01)
        return found

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self._sock.close()


@dataclass
class LinkEvent:
    t: float  # arrival here
    link: str
    state: str
    active: bool


class LinkWatch:
    """The links service's statuses as they arrive: which WAN carries the tunnel."""

    def __init__(self, sub: Subscription) -> None:
        self.sub = sub
        self.events: list[LinkEvent] = []
        self.active: str | None = None
        self.changed = asyncio.Event()
        self._task = asyncio.create_task(self._read(), name="link-watch")

    async def _read(self) -> None:
        async for env in self.sub:
            m = env.message
            if not isinstance(m, LinkStatus):
                continue
            self.events.append(LinkEvent(time.monotonic(), m.link_id, m.state, m.active))
            if m.active:
                self.active = m.link_id
            elif self.active == m.link_id:
                self.active = None
            self.changed.set()

    async def wait_active(self, link: str, within: float) -> None:
        deadline = time.monotonic() + within
        while self.active != link:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError(f"the links service did not put the tunnel on {link} within "
                                   f"{within:g} s (active: {self.active or 'none'})")
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), left)

    def first(self, link: str, state: str, after: float) -> float | None:
        """When the first status of `link` in `state` arrived after `after`."""
        return next((e.t for e in self.events
                     if e.t > after and e.link == link and e.state == state), None)

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self.sub.close()


class _Received(asyncio.DatagramProtocol):
    def __init__(self, into: dict[int, float]) -> None:
        self.into = into

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if len(data) >= _TEL.size:
            seq, _sent_ns = _TEL.unpack_from(data)
            self.into.setdefault(seq, time.monotonic())


class _Quiet(asyncio.DatagramProtocol):
    def error_received(self, exc: Exception) -> None:
        pass  # an ICMP error while the tunnel's route moves: that datagram counts as lost


@dataclass(eq=False)
class Telemetry:
    """Numbered datagrams at 10 Hz from the vehicle to the centre's tunnel address."""

    sender: asyncio.DatagramTransport
    receiver: asyncio.DatagramTransport
    sent: list[float] = field(default_factory=list)  # index: sequence number
    received: dict[int, float] = field(default_factory=dict)
    task: asyncio.Task[None] | None = None

    @classmethod
    async def start(cls, world: World, centre_address: str) -> Telemetry:
        loop = asyncio.get_running_loop()
        received: dict[int, float] = {}
        rx = netns.socket_in(world.centre)
        tx = netns.socket_in(world.vehicle)
        try:
            rx.bind(("0.0.0.0", TELEMETRY_PORT))
            rx.setblocking(False)
            tx.connect((centre_address, TELEMETRY_PORT))  # routed into the tunnel
            tx.setblocking(False)
        except BaseException:
            rx.close()
            tx.close()
            raise
        receiver, _ = await loop.create_datagram_endpoint(lambda: _Received(received), sock=rx)
        sender, _ = await loop.create_datagram_endpoint(_Quiet, sock=tx)
        t = cls(sender, receiver, received=received)
        t.task = asyncio.create_task(t._send(), name="telemetry")
        return t

    async def _send(self) -> None:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        padding = bytes(TELEMETRY_BYTES - _TEL.size)
        while True:
            seq = len(self.sent)
            self.sent.append(time.monotonic())
            self.sender.sendto(_TEL.pack(seq, time.time_ns()) + padding)
            await asyncio.sleep(max(0.0, t0 + (seq + 1) / TELEMETRY_HZ - loop.time()))

    def first_sent_after(self, t: float) -> float | None:
        """When the first datagram sent after `t` to arrive arrived (one sent before may
        still be arriving: it was on its way before `t`)."""
        first = bisect.bisect_right(self.sent, t)
        later = [at for seq, at in self.received.items() if seq >= first]
        return min(later) if later else None

    def lost(self, start: float, end: float) -> tuple[int, int]:
        """(lost, sent) of the datagrams sent in [start, end)."""
        lo, hi = bisect.bisect_left(self.sent, start), bisect.bisect_left(self.sent, end)
        return sum(1 for seq in range(lo, hi) if seq not in self.received), hi - lo

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        self.sender.close()
        self.receiver.close()


class ViewerRun:
    """The viewer process (:mod:`edge.bench.failover_viewer`) in the centre's namespace."""

    def __init__(self, proc: asyncio.subprocess.Process, log: Path) -> None:
        self.proc = proc
        self.log = log
        self.frames: list[float] = []
        self.states: list[tuple[float, str]] = []
        self.signalling: list[str] = []
        self.posted: dict[str, Any] | None = None
        self.pair: tuple[str, str] | None = None
        self.end: dict[str, Any] | None = None
        self.error: str | None = None
        self.warnings: list[str] = []
        self._news = asyncio.Event()
        self._reader = asyncio.create_task(self._read(), name="failover-viewer")

    @classmethod
    async def start(cls, ns: str, url: str, token_file: Path, local: str, remote: str,
                    log: Path, max_seconds: float) -> ViewerRun:
        argv = [*netns.exec_prefix(ns), sys.executable, "-m", "edge.bench.failover_viewer",
                url, str(token_file), "--local", local, "--remote", remote,
                "--start-within", f"{POSTED_WITHIN_S:g}", "--max-seconds", f"{max_seconds:g}"]
        with open(log, "ab") as err:  # noqa: ASYNC230 - a local file, once
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=err)
        return cls(proc, log)

    @property
    def session_id(self) -> str | None:
        location = (self.posted or {}).get("location")
        return None if not location else str(location).rstrip("/").rsplit("/", 1)[-1]

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for raw in self.proc.stdout:
            try:
                line = json.loads(raw)
            except ValueError:
                continue
            if isinstance(line, dict):
                # a line short of a field is skipped: the pipe must keep being drained
                with contextlib.suppress(KeyError, TypeError, ValueError):
                    self._take(line)
            self._news.set()
        self._news.set()

    def _take(self, line: dict[str, Any]) -> None:
        kind = line.get("kind")
        if kind == "frame":
            self.frames.append(float(line["t"]))
        elif kind == "state":
            self.states.append((float(line["t"]), str(line["state"])))
        elif kind == "signalling":
            self.signalling.append(str(line["state"]))
        elif kind == "posted":
            self.posted = line
            self.signalling = [str(s) for s in line["signalling"]] + self.signalling
        elif kind == "pair":
            self.pair = (str(line["local"]), str(line["remote"]))
        elif kind == "end":
            self.end = line
        elif kind == "warning":
            self.warnings.append(str(line.get("warning")))
        elif kind == "error":
            self.error = str(line.get("error"))

    def stderr_tail(self, lines: int = 5) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def check_running(self) -> None:
        if self.error is not None:
            raise RuntimeError(f"the viewer: {self.error}")
        if self.proc.returncode is not None:
            raise RuntimeError(f"the viewer's process exited ({self.proc.returncode}):\n"
                               f"{self.stderr_tail()}")

    async def wait_for(self, what: str, within: float, done: Any) -> None:
        """Until `done()` holds, the viewer fails, or `within` s pass (a RuntimeError)."""
        deadline = time.monotonic() + within
        while not done():
            self.check_running()
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError(f"the viewer: no {what} within {within:g} s")
            self._news.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._news.wait(), min(left, 0.5))

    async def wait_frames(self, count: int, after: float, within: float) -> None:
        def enough() -> bool:
            return len(self.frames) - bisect.bisect_right(self.frames, after) >= count
        await self.wait_for(f"{count} frames decoded", within, enough)

    def frames_between(self, start: float, end: float = float("inf")) -> int:
        return bisect.bisect_left(self.frames, end) - bisect.bisect_right(self.frames, start)

    def gap_reaching(self, start: float, end: float, now: float | None = None) -> float:
        """The longest time between two decoded frames over the gaps that reach into
        [start, end) (a gap still open at `now` counts up to it), in seconds."""
        times = [*self.frames, time.monotonic() if now is None else now]
        i = max(0, bisect.bisect_right(times, start) - 1)
        longest = 0.0
        while i + 1 < len(times) and times[i] < end:
            longest = max(longest, times[i + 1] - times[i])
            i += 1
        return longest

    def gap_inside(self, start: float, end: float) -> float:
        """The longest time between two decoded frames both in [start, end], in seconds."""
        lo, hi = bisect.bisect_left(self.frames, start), bisect.bisect_right(self.frames, end)
        return max((b - a for a, b in pairwise(self.frames[lo:hi])), default=0.0)

    def connected_throughout(self) -> bool:
        """Connected once, and never anything else after."""
        states = [s for _, s in self.states]
        if "connected" not in states:
            return False
        return all(s == "connected" for s in states[states.index("connected"):])

    async def stop(self) -> None:
        """SIGTERM: it reports its end and DELETEs its session (through the tunnel)."""
        await stop_process(self.proc, STOP_WITHIN_S)
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader


# -- the world ------------------------------------------------------------------------------


@dataclass
class FailoverWorld:
    """Everything :func:`failover_world` started, for the bench and the tests."""

    links: DemoLinks
    world: World
    tunnel: TunnelPlan
    runtime: Path
    token_file: Path
    vehicle: Processes
    centre: Processes
    api: VehicleApi
    capture: TunnelCapture
    watch: LinkWatch
    profiles: dict[str, LinkProfile]

    @property
    def vehicle_tunnel_address(self) -> str:
        return self.tunnel.vehicle_address.split("/")[0]

    @property
    def centre_tunnel_address(self) -> str:
        return self.tunnel.centre_address.split("/")[0]

    def url(self, stream: str) -> str:
        return (f"http://{self.vehicle_tunnel_address}:{HTTP_PORT}/whep/{CAMERA}"
                f"?profile={stream}")

    def vehicle_address(self, wan: str) -> str:
        return self.world.wan(wan).vehicle_address

    async def cut(self, wan: str, seconds: float) -> float:
        """Take `wan` down for `seconds` from now; when it went down (monotonic)."""
        emulator = self.links.emulator
        assert emulator is not None

        def cut() -> float:
            emulator.add_outage(wan, Outage(emulator.elapsed(), seconds, "down"))
            return time.monotonic()

        return await asyncio.wrap_future(self.links.in_relay(cut))

    def check_running(self) -> None:
        for procs in (self.vehicle, self.centre):
            for name, proc in procs.procs.items():
                if proc.returncode is not None:
                    raise RuntimeError(f"{name} exited ({proc.returncode}):\n"
                                       f"{procs.log_tail(name)}")

    def centre_roams(self) -> list[str]:
        """The WANs `edge centre` said the vehicle's tunnel came from, in order."""
        log = self.runtime / "centre.log"
        text = log.read_text(errors="replace") if log.exists() else ""
        by_address = {self.vehicle_address(w): w for w in self.profiles}
        return [by_address.get(m["address"], m["address"]) for m in _ROAM.finditer(text)]

    async def start_viewer(self, stream: str, name: str = "viewer",
                           max_seconds: float = 3600.0) -> ViewerRun:
        return await ViewerRun.start(self.world.centre, self.url(stream), self.token_file,
                                     self.centre_tunnel_address, self.vehicle_tunnel_address,
                                     self.runtime / f"{name}.log", max_seconds)

    async def session(self, session_id: str | None) -> dict[str, Any] | None:
        """The uplink's own view of a session (/api/state), None if it lists none such."""
        try:
            state = await self.api.state()
        except (OSError, ValueError) as e:
            raise RuntimeError(f"the uplink's /api/state did not answer: {e}") from None
        return next((s for s in state.get("sessions", [])
                     if s.get("session_id") == session_id), None)


async def _wait_live(w: FailoverWorld) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        w.check_running()
        with contextlib.suppress(OSError, ValueError):
            state = await w.api.state()
            cams = [c for c in state["cameras"] if c["id"] == CAMERA]
            if cams and cams[0]["state"] == "live" and {"main", "sub"} <= set(cams[0]["streams"]):
                return
        await asyncio.sleep(0.2)
    raise RuntimeError(f"the camera did not become live at the uplink within "
                       f"{STARTUP_TIMEOUT_S:.0f} s:\n{w.vehicle.log_tail('uplink')}")


@asynccontextmanager
async def failover_world(profile_a: str = "lte", profile_b: str = "lte"
                         ) -> AsyncIterator[FailoverWorld]:
    """The world with everything running, the tunnel on `lte` and the camera live at the
    uplink; all of it stopped and removed on the way out. A RuntimeError says why not."""
    profiles = {LINKS[0]: PROFILES[profile_a], LINKS[1]: PROFILES[profile_b]}
    bus = BenchBus.start()
    runtime = bus.runtime
    links: DemoLinks | None = None
    stack = contextlib.AsyncExitStack()
    try:
        token_file = runtime / "uplink.token"
        token_file.write_text(TOKEN + "\n")
        listen = f"{VEHICLE_TUNNEL_ADDRESS.split('/')[0]}:{HTTP_PORT}"
        path = vehicle_config(runtime, profiles, listen)
        links = await DemoLinks.start(load_config(path), path, runtime)
        if links.world is None:
            raise RuntimeError(f"the links are not emulated: {links.why}")
        if links.tunnel is None or links.centre_config is None:
            raise RuntimeError(f"no tunnel to the centre: {links.tunnel_why}")
        world = links.world
        centre = Processes(runtime, prefix=netns.exec_prefix(world.centre))
        vehicle = Processes(runtime, prefix=netns.exec_prefix(world.vehicle))
        stack.push_async_callback(centre.stop)
        stack.push_async_callback(vehicle.stop)  # first (callbacks run last in, first out)
        capture = TunnelCapture(world.centre, {w.name: w.vehicle_address for w in world.wans},
                                links.tunnel.port)
        stack.callback(capture.close)
        client = BusClient(bus.endpoints, source="bench")
        stack.push_async_callback(client.close)
        watch = LinkWatch(client.subscribe(topics.LINK))
        stack.push_async_callback(watch.close)
        w = FailoverWorld(
            links, world, links.tunnel, runtime, token_file, vehicle, centre,
            VehicleApi(world.vehicle, f"http://{listen}", TOKEN), capture, watch, profiles)
        config = str(links.config_path)
        await centre.start("centre", "centre", "--config", str(links.centre_config))
        await vehicle.start("links", "run", "links", "--config", config)
        await vehicle.start("sim-camera", "sim", "camera", "--name", CAMERA, "--port",
                            str(RTSP_PORT))
        await vehicle.start("camera", "run", f"camera@{CAMERA}", "--config", config)
        try:
            await watch.wait_active(LINKS[0], TUNNEL_WITHIN_S)
        except RuntimeError as e:
            w.check_running()
            raise RuntimeError(f"{e}:\n{vehicle.log_tail('links')}") from None
        # the uplink listens on the tunnel's address, which exists from now on
        await vehicle.start("uplink", "run", "uplink", "--config", config)
        await _wait_live(w)
        yield w
    finally:
        try:
            await stack.aclose()
        finally:
            if links is not None:
                links.close()
            bus.stop()  # and its runtime dir, with the keys and configs
