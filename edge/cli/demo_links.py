"""`edge demo`'s WAN links: the vehicle's links emulated, and a local `edge centre`.

When the link emulator can run here (root: :func:`drivers.sim.link.world.preflight`),
each `[demo] sim_links` entry becomes one emulated WAN named after the link (`sat`
with `geo`, `lte` with `lte`) between a vehicle and a centre network namespace, and:

- the emulator relays them from this process, on a thread with an event loop of its
  own. Not the demo's loop: that one also runs the Textual dashboard, whose redraws
  hold it for tens of milliseconds, and every packet due meanwhile would wait (the
  emulated RTT and jitter would be the dashboard's); on its own thread a packet waits
  at most for the GIL's switch interval (5 ms). Not an `edge sim link` child either:
  the services' config must name the namespaces and addresses before anything starts,
  and a world built here takes about 0.1 s where a child takes a Python start;
- WireGuard keys for both ends are made into the runtime dir, and `edge centre` runs in
  the centre namespace as a supervised child (restarted like a simulator), with a
  generated config (:mod:`edge.cli.demo_config`);
- every service gets a generated vehicle config: the emulated `[[links]]` name their
  WAN interface and the vehicle's address on it, `[centre]` is the centre's service
  address, with a `[centre.tunnel]`. The `links` service runs inside the vehicle
  namespace (the supervisor's command prefix); everything else stays in the host's.

Nothing waits for the links: the world is built, then the demo starts as before.
Everything the world made goes when :meth:`DemoLinks.close` runs (the demo calls it on
every way out; a SIGKILLed demo's namespaces are swept by the next world). Without
root the demo runs as it always did, with :attr:`DemoLinks.why` saying why not.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import secrets
import threading
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from edge.cli.demo_config import (
    EmulatedLink,
    TunnelPlan,
    centre_data,
    toml_text,
    vehicle_data,
)
from edge.config import ConfigError, VehicleConfig, load_config
from edge.config.toml_lines import key_lines
from edge.runtime.supervisor import Child, Supervisor, edge_argv

if TYPE_CHECKING:
    from drivers.sim.link.emulator import Emulator
    from drivers.sim.link.world import World

# The emulator (pyroute2) and the tunnel's keys (cryptography) are imported only when the
# links are emulated: a demo without them starts as fast as before.

#: the service that must run where the links are: in the vehicle's namespace
LINKS_SERVICE = "links"
CENTRE_CHILD = "centre"
PROBE_PORT = 7471
TUNNEL_PORT = 51820
# Inside the tunnel: outside every emulated WAN (198.18.0.0/16) and the centre's service
# range (198.19.0.0/24), and never a private range that real traffic might mean.
CENTRE_TUNNEL_ADDRESS = "198.19.100.1/24"
VEHICLE_TUNNEL_ADDRESS = "198.19.100.2/24"
LINKS_DIR = "links"
VEHICLE_CONFIG = "vehicle.toml"
CENTRE_CONFIG = "centre.toml"
_START_TIMEOUT_S = 5.0
T = TypeVar("T")


def _new_private_key() -> str:
    from edge.links.wireguard import encode_key

    key = bytearray(os.urandom(32))
    key[0] &= 248  # clamped as `wg genkey` writes it
    key[31] = (key[31] & 127) | 64
    return encode_key(bytes(key))


def _write_secret(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text + "\n")


def _check_sim_links(config: VehicleConfig, path: Path) -> list[tuple[str, str]]:
    """(link id, profile) for each `[demo] sim_links` entry; a ConfigError for a bad one."""
    wanted = config.demo.sim_links
    if not wanted:
        return []
    from drivers.sim.link.world import MAX_WANS, check_wan_name

    ids = [link.id for link in config.links]
    problems: list[str] = []
    seen: set[str] = set()
    for i, sim in enumerate(wanted):
        where = f"demo.sim_links[{i}].link"
        if sim.link not in ids:
            problems.append(f'{where}: no link "{sim.link}" (links: '
                            f"{', '.join(ids) or 'none'})")
        elif sim.link in seen:
            problems.append(f'{where}: link "{sim.link}" is emulated twice')
        else:
            try:
                check_wan_name(sim.link)  # it names the WAN's interfaces too
            except ValueError as e:
                problems.append(f"{where}: {e}")
        seen.add(sim.link)
    if len(wanted) > MAX_WANS:
        problems.append(f"demo.sim_links: at most {MAX_WANS} links can be emulated, "
                        f"got {len(wanted)}")
    if problems:
        try:
            line = key_lines(path.read_text()).get(("demo", "sim_links"))
        except (OSError, UnicodeDecodeError):
            line = None
        raise ConfigError(str(path), [f"{line}: {p}" if line else p for p in problems])
    return [(sim.link, sim.profile) for sim in wanted]


class _RelayThread:
    """The emulator on a thread with an event loop of its own (see the module's note)."""

    def __init__(self, world: World) -> None:
        from drivers.sim.link.emulator import Emulator

        self.emulator: Emulator = Emulator(world)
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="link-emulator", daemon=True)

    def start(self) -> None:
        self._thread.start()
        self._started.wait(_START_TIMEOUT_S)  # the loop's first callback: microseconds
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.call_soon(self._begin)
        try:
            self._loop.run_forever()
        finally:
            self._loop.close()

    def _begin(self) -> None:
        try:
            self.emulator.start()
        except BaseException as e:  # handed to the thread that started us
            self._error = e
            self._loop.stop()
        finally:
            self._started.set()

    def call(self, fn: Callable[[], T]) -> concurrent.futures.Future[T]:
        """`fn()` run on the relay's thread: the emulator is not thread-safe (an outage
        added from another thread would race its timers)."""
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            try:
                future.set_result(fn())
            except BaseException as e:  # handed to the caller's thread
                future.set_exception(e)

        self._loop.call_soon_threadsafe(run)
        return future

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        self._loop.call_soon_threadsafe(self._end)
        self._thread.join(_START_TIMEOUT_S)

    def _end(self) -> None:
        self.emulator.stop()
        self._loop.stop()


class DemoLinks:
    """The demo's emulated links, or why there are none. Make one with :meth:`start`."""

    def __init__(self, config: VehicleConfig, config_path: Path, why: str | None) -> None:
        #: the vehicle config the services run with, and its file
        self.config = config
        self.config_path = config_path
        #: why the links are not emulated (None while they are)
        self.why = why
        self.world: World | None = None
        self.tunnel: TunnelPlan | None = None
        self.tunnel_why: str | None = None
        self.profiles: dict[str, str] = {}
        self._relay: _RelayThread | None = None
        self._centre_config: Path | None = None

    @classmethod
    async def start(cls, config: VehicleConfig, config_path: Path, runtime_dir: Path
                    ) -> DemoLinks:
        """Build the world and start relaying, when `[demo] sim_links` asks and this process
        can; otherwise a DemoLinks that says why not. A ConfigError for a bad `sim_links`
        (with or without root, so a config is checked the same everywhere)."""
        wanted = _check_sim_links(config, config_path)
        if not wanted:
            return cls(config, config_path, "the config emulates no links ([demo] sim_links)")
        from drivers.sim.link.profile import PROFILES
        from drivers.sim.link.world import World, preflight

        if (why := preflight()) is not None:
            return cls(config, config_path, why)
        world = World([(link, PROFILES[profile]) for link, profile in wanted])
        try:
            await world.__aenter__()
        except Exception as e:  # OSError, pyroute2's NetlinkError: the world took itself down
            return cls(config, config_path, f"cannot build the emulated network: {e}")
        links = cls(config, config_path, None)
        links.world = world
        links.profiles = dict(wanted)
        try:
            links._relay = _RelayThread(world)
            links._relay.start()
            links._write_configs(runtime_dir)
        except BaseException:
            links.close()
            raise
        return links

    def _write_configs(self, runtime_dir: Path) -> None:
        world = self.world
        assert world is not None
        folder = runtime_dir / LINKS_DIR
        folder.mkdir(mode=0o700, exist_ok=True)
        from edge.links.wireguard import public_key_of, tunnel_preflight

        self.tunnel_why = tunnel_preflight()
        if self.tunnel_why is None:
            keys: dict[str, Path] = {}
            for end in ("vehicle", "centre"):
                private = _new_private_key()
                keys[f"{end}.key"] = folder / f"{end}.key"
                keys[f"{end}.pub"] = folder / f"{end}.pub"
                _write_secret(keys[f"{end}.key"], private)
                _write_secret(keys[f"{end}.pub"], public_key_of(private))
            # wireguard-go's sockets share one directory across namespaces: names per demo
            tag = secrets.token_hex(3)
            self.tunnel = TunnelPlan(
                f"edge-wgv-{tag}", f"edge-wgc-{tag}", VEHICLE_TUNNEL_ADDRESS,
                CENTRE_TUNNEL_ADDRESS, TUNNEL_PORT, keys["vehicle.key"], keys["vehicle.pub"],
                keys["centre.key"], keys["centre.pub"])
        self._centre_config = folder / CENTRE_CONFIG
        self._centre_config.write_text(toml_text(centre_data(
            self.config.vehicle, world.service_address, PROBE_PORT, self.tunnel)))
        original = tomllib.loads(self.config_path.read_text())
        emulated = [EmulatedLink(wan.name, wan.name, wan.vehicle_address) for wan in world.wans]
        vehicle_path = runtime_dir / VEHICLE_CONFIG
        vehicle_path.write_text(toml_text(vehicle_data(
            original, self.config_path.resolve().parent, emulated, world.service_address,
            PROBE_PORT, self.tunnel)))
        self.config, self.config_path = load_config(vehicle_path), vehicle_path

    # -- what a bench or a test needs ----------------------------------------------------
    @property
    def emulator(self) -> Emulator | None:
        """The relay's emulator (None while the links are not emulated): read its counters
        from anywhere, change it only through :meth:`in_relay`."""
        return None if self._relay is None else self._relay.emulator

    def in_relay(self, fn: Callable[[], T]) -> concurrent.futures.Future[T]:
        """`fn()` run on the emulator's thread (an outage scheduled by a bench or a test)."""
        if self._relay is None:
            raise RuntimeError(f"the links are not emulated: {self.why}")
        return self._relay.call(fn)

    @property
    def centre_config(self) -> Path | None:
        """`edge centre`'s generated config (None while the links are not emulated)."""
        return self._centre_config

    # -- what the supervisor needs -------------------------------------------------------
    @property
    def prefixes(self) -> dict[str, list[str]]:
        """For :class:`Supervisor`: the links service runs in the vehicle's namespace."""
        if self.world is None:
            return {}
        from drivers.sim.link import netns

        return {LINKS_SERVICE: netns.exec_prefix(self.world.vehicle)}

    def add_children(self, sup: Supervisor) -> None:
        """`edge centre` in the centre's namespace, started after the broker with the
        simulators (and stopped with them, after the services)."""
        if self.world is None or self._centre_config is None:
            return
        from drivers.sim.link import netns

        argv = [*netns.exec_prefix(self.world.centre),
                *edge_argv("centre", "--config", str(self._centre_config))]
        sup.children.insert(1 if sup.children[:1] and sup.children[0].name == "bus" else 0,
                            Child(CENTRE_CHILD, argv, "simulator"))

    def notes(self, sup: Supervisor) -> list[str]:
        """What to tell the operator once, on stderr."""
        if self.world is None:
            return [] if not self.config.demo.sim_links else [f"links not emulated: {self.why}"]
        wans = ", ".join(f"{wan.name} ({self.profiles[wan.name]}, vehicle "
                         f"{wan.vehicle_address})" for wan in self.world.wans)
        notes = [f"links emulated: {wans}; edge centre at {self.world.service_address} "
                 f"in netns {self.world.centre}; vehicle netns {self.world.vehicle}"]
        if self.tunnel_why is not None:
            notes.append(f"no tunnel to the centre: {self.tunnel_why}")
        if not any(c.name == LINKS_SERVICE for c in sup.children):
            notes.append("no links service to run yet: nothing probes the emulated links")
        return notes

    # -- the end ---------------------------------------------------------------------------
    def close(self) -> None:
        """Stop relaying and take the world down. Idempotent; call after the supervisor
        stopped (its children in the namespaces are gone by then)."""
        if self._relay is not None:
            self._relay.stop()
        if self.world is not None:
            self.world.close()

    def summary(self) -> dict[str, Any]:
        """For the demo's JSON summary: whether the links were emulated, and how they did."""
        world = self.world
        if world is None:
            return {"emulated": False, "why": self.why}
        counters = self._relay.emulator.counters() if self._relay is not None else {}
        return {
            "emulated": True,
            "emulator": "thread",
            "namespaces": {"vehicle": world.vehicle, "centre": world.centre},
            "centre": {"address": world.service_address, "probe_port": PROBE_PORT,
                       "tunnel": None if self.tunnel is None else {
                           "centre_interface": self.tunnel.centre_interface,
                           "vehicle_interface": self.tunnel.vehicle_interface,
                           "port": self.tunnel.port},
                       "tunnel_why": self.tunnel_why},
            "wans": {wan.name: {"profile": self.profiles[wan.name],
                                "vehicle_address": wan.vehicle_address,
                                "centre_address": wan.centre_address,
                                **{d: c.as_dict() for d, c in counters.get(wan.name, {}).items()}}
                     for wan in world.wans},
        }
