"""The demo supervisor: the whole vehicle as subprocesses on one machine.

It starts the broker and the simulated cameras first, then what the first
pictures need (cameras, drones, the GB/T 28181 platform and its simulated
devices), then the rest (see `Supervisor.start`): one process per service, each
exactly as systemd would (`edge run NAME`), with a private
runtime dir for ipc endpoints so two demos can run side by side. A child that
exits is restarted with exponential backoff. Children run in their own process
groups (a Ctrl-C at the terminal reaches only us, so we control the order of
shutdown) and die with us even if we are killed (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import os
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.bus import topics
from edge.bus.client import BusClient
from edge.bus.endpoints import RUNTIME_DIR_ENV, Endpoints
from edge.bus.messages import CommandEvent, ServiceHealth
from edge.config import ConfigError, VehicleConfig, load_config
from edge.config.demo import gb_platform_address
from edge.config.secrets import SecretRef
from edge.config.toml_lines import key_lines
from edge.runtime import memory, ports
from edge.runtime.processes import die_with_parent
from edge.services import SERVICES, split_name

log = logging.getLogger("supervisor")

BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 10.0
HEALTHY_RUN_S = 30.0  # a child that ran this long restarts quickly again
STOP_GRACE_S = 5.0
# How long a step of the start waits for the one before it to be up (see `start`).
STAGE_WAIT_S = 3.0
CAMERA_SIM = "drivers.sim.camera"
ONVIF_SIM = "drivers.sim.onvif"
DRONE_SIM = "drivers.sim.drone"
GB_SIM = "drivers.sim.gb28181"
SIM_CLI = "edge.cli.sim"
#: the demo's one process for all its simulated cameras, and the one for its drones
SIM_CAMERAS = "sim-cameras"
SIM_DRONES = "sim-drones"


@dataclass
class Child:
    name: str
    argv: list[str]
    kind: str  # "service" | "simulator"
    proc: asyncio.subprocess.Process | None = None
    starts: int = 0
    last_start: float = 0.0
    backoff: float = field(default_factory=lambda: BACKOFF_FIRST_S)  # per child: patchable
    last_exit: int | None = None
    # Sampled as the demo stops (the summary is printed after): resident MB, and its
    # proportional share (shared libraries divided among the processes mapping them).
    rss_mb: float | None = None
    pss_mb: float | None = None
    health: ServiceHealth | None = None
    log_path: Path | None = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    def summary(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "started": self.starts > 0 and (self.kind != "service" or self.health is not None),
            "starts": self.starts,
            "restarts": max(0, self.starts - 1),
            "running": self.running,
            "published": self.health.published if self.health else None,
            "state": self.health.state if self.health else ("running" if self.running else
                                                             "stopped"),
            "last_exit": self.last_exit,
            "rss_mb": self.rss_mb,
            "pss_mb": self.pss_mb,
        }


def on_picture_path(child: Child) -> bool:
    """Whether the first pictures wait for `child`: the simulated devices, the cameras,
    and what feeds cameras (a drone announces its gimbal camera's stream; the GB/T 28181
    platform invites a dome's)."""
    kind, _ = split_name(child.name)
    return child.kind == "simulator" and kind in (SIM_CAMERAS, SIM_DRONES, "sim-gb28181") \
        or child.kind == "service" and kind in ("bus", "camera", "drone", "gb28181")


async def _wait_for_ports(wanted: Sequence[int], timeout: float) -> None:
    """Until every local TCP port in `wanted` accepts a connection, or `timeout`."""
    deadline = time.monotonic() + timeout
    for port in wanted:
        # Another process's port: nothing to wait on but asking again.
        while time.monotonic() < deadline and not await ports.answers(port):  # noqa: ASYNC110
            await asyncio.sleep(0.05)


def edge_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "edge", *args]


def _have(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def simulator_children(config: VehicleConfig, config_path: Path) -> list[Child]:
    """The simulated devices `config.demo` asks for, as `edge sim ...` processes: every
    camera in one `sim-cameras` (an ONVIF camera's RTSP and ONVIF services with them),
    every drone in one `sim-drones`, and a process for each GB/T 28181 device.

    One process of each kind, not one a device: each interpreter with PyAV and OpenCV
    cost the demo 40-50 MB of memory (issue 17), and six of them starting together on two
    cores served their cached loops after about 2 s, one process after 0.5 s. The price
    is the restart policy's: a crashed `sim-cameras` is restarted with every camera in
    it at once (a camera that merely cannot listen is retried inside it, the others
    serving on)."""
    children: list[Child] = []
    demo = config.demo
    if not _have(SIM_CLI):
        if demo.sim_cameras or demo.sim_drones or demo.sim_gb28181:
            log.warning("config asks for simulators, but `edge sim` is not installed")
        return children
    for wanted, module, what in ((demo.sim_cameras, CAMERA_SIM, "cameras"),
                                 ([c for c in demo.sim_cameras if c.onvif_port], ONVIF_SIM,
                                  "ONVIF cameras"),
                                 (demo.sim_drones, DRONE_SIM, "drones"),
                                 (demo.sim_gb28181, GB_SIM, "GB/T 28181 devices")):
        if wanted and not _have(module):
            log.warning("config asks for simulated %s but %s is not installed", what, module)
    base = config_path.parent
    # `edge sim cameras`: each camera a group of `edge sim camera`'s flags, from --name.
    cameras = demo.sim_cameras if _have(CAMERA_SIM) else []
    argv = edge_argv("sim", "cameras")
    for cam in cameras:
        argv += ["--name", cam.name, "--port", str(cam.port), "--codec", cam.codec,
                 "--profile", cam.profile]
        if cam.onvif_port is not None and _have(ONVIF_SIM):
            # No WS-Discovery responder: its fixed UDP port would keep a second demo (or
            # a second simulated camera) from starting.
            argv += ["--onvif", str(cam.onvif_port), "--discovery-port", "0"]
            if cam.credentials is not None:
                argv += ["--onvif-credentials-file",
                         str(_secret_path(cam.credentials, base, config_path))]
    if cameras:
        children.append(Child(SIM_CAMERAS, argv, "simulator"))
    # `edge sim drones`: each drone a group of `edge sim drone`'s flags, from --connection.
    drones = demo.sim_drones if _have(DRONE_SIM) else []
    argv = edge_argv("sim", "drones")
    for drone in drones:
        argv += ["--connection", drone.connection, "--sysid", str(drone.sysid)]
        if drone.home is not None:
            argv += ["--home", f"{drone.home.lat},{drone.home.lon}"]
        if drone.camera:
            argv += ["--camera", drone.camera]
    if drones:
        children.append(Child(SIM_DRONES, argv, "simulator"))
    children += _gb_device_children(config, config_path) if _have(GB_SIM) else []
    return children


def _secret_path(ref: SecretRef, base: Path, config_path: Path) -> Path:
    # The simulator reads the file itself: a secret never goes on a command line.
    try:
        return ref.path(base)
    except ConfigError as e:
        raise ConfigError(str(config_path), e.problems) from None


def _gb_device_children(config: VehicleConfig, config_path: Path) -> list[Child]:
    """`edge sim gb28181` for each `[demo] sim_gb28181` device, registering to the demo's
    own `[gb28181]` platform with the password it asks of that device."""
    gb = config.gb28181
    children: list[Child] = []
    problems: list[str] = []
    for i, device in enumerate(config.demo.sim_gb28181):
        where = f"demo.sim_gb28181[{i}]"
        try:
            platform = gb_platform_address(gb, device.transport)
        except ValueError as e:
            problems.append(f"{where}: {e}")
            continue
        password = device.password_ref(gb)
        if password is None:
            problems.append(f"{where}.password: [gb28181] gives device {device.id} no "
                            "password; give it one here or there")
            continue
        children.append(Child(f"sim-gb28181@{device.id}", edge_argv(
            "sim", "gb28181", "--id", device.id, "--platform", platform,
            "--platform-id", gb.platform_id,
            "--password-file", str(_secret_path(password, config_path.parent, config_path)),
            "--channels", str(device.channels), "--codec", device.codec,
            "--keepalive-s", f"{gb.keepalive_interval_s:g}"), "simulator"))
    if problems:
        try:
            line = key_lines(config_path.read_text()).get(("demo", "sim_gb28181"))
        except (OSError, UnicodeDecodeError):
            line = None
        raise ConfigError(str(config_path), [f"{line}: {p}" if line else p for p in problems])
    return children


def plan(config: VehicleConfig, config_path: Path) -> list[Child]:
    """Every process of the demo, in start order: broker, simulators, services."""
    services = [
        Child(name, edge_argv("run", name, "--config", str(config_path)), "service")
        for spec in SERVICES.values()
        for name in spec.names(config)
    ]
    bus = [c for c in services if c.name == "bus"]
    rest = [c for c in services if c.name != "bus"]
    return bus + simulator_children(config, config_path) + rest


class Supervisor:
    def __init__(self, config: VehicleConfig, config_path: Path, runtime_dir: Path, *,
                 prefixes: Mapping[str, Sequence[str]] | None = None) -> None:
        """`prefixes`: by child name, a command to put before that child's argv, e.g.
        nsenter's to run it in a network namespace (it must exec the child, so that the
        pid we signal and wait for is the child's)."""
        self.config = config
        self.config_path = config_path
        self.runtime_dir = runtime_dir
        self.endpoints = Endpoints.from_config(config.bus, runtime_dir)
        self.children = plan(config, config_path)
        self.prefixes = dict(prefixes or {})
        for child in self.children:
            child.argv[:0] = self.prefixes.get(child.name, ())
        self.log_dir = runtime_dir / "logs"
        self._stopping = False
        self._tasks: list[asyncio.Task[None]] = []
        self.bus: BusClient | None = None
        self.started_at = time.monotonic()
        self._own_pss_mb: float | None = None

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env[RUNTIME_DIR_ENV] = str(self.runtime_dir)
        env["PYTHONUNBUFFERED"] = "1"
        for key, value in memory.MALLOC_ENV.items():
            env.setdefault(key, value)  # as the systemd units run them, unless told otherwise
        env.pop("NOTIFY_SOCKET", None)  # our children are not systemd's
        return env

    async def start(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.bus = BusClient(self.endpoints, source="supervisor")
        self._tasks.append(asyncio.create_task(self._watch_health(), name="health-watch"))
        self._tasks.append(asyncio.create_task(self._watch_adoptions(), name="adopt-watch"))
        # In three steps (issue 17: the demo's first pictures were late because seventeen
        # interpreters started at once on two cores): the simulated cameras and the broker;
        # once the cameras listen, what the first pictures need; once those are up (or
        # after a bound), the rest. On a vehicle the cameras are up before the software.
        first = [c for c in self.children if c.name in (SIM_CAMERAS, "bus")]
        picture = [c for c in self.children if c not in first and on_picture_path(c)]
        rest = [c for c in self.children if c not in first and c not in picture]
        for child in first:
            self._keep_running(child)
        if any(c.name == "bus" for c in first):
            # Give the broker a moment to bind before its clients start.
            await self._wait_for_socket(Path(self.endpoints.sub.removeprefix("ipc://")))
        if any(c.name == SIM_CAMERAS for c in first):
            await _wait_for_ports([c.port for c in self.config.demo.sim_cameras],
                                  STAGE_WAIT_S)
        for child in picture:
            self._keep_running(child)
        await self._wait_for_health(picture, STAGE_WAIT_S)
        for child in rest:
            self._keep_running(child)

    def _keep_running(self, child: Child) -> None:
        self._tasks.append(asyncio.create_task(self._keep(child), name=f"keep-{child.name}"))

    async def _wait_for_health(self, children: list[Child], timeout: float) -> None:
        """Until every service of `children` has reported its health (it has started
        serving), or `timeout`."""
        services = [c for c in children if c.kind == "service"]
        deadline = time.monotonic() + timeout
        # The health watch fills `health` in; nothing to wait on for a set of children.
        while time.monotonic() < deadline and any(c.health is None for c in services):  # noqa: ASYNC110
            await asyncio.sleep(0.05)

    async def _wait_for_socket(self, path: Path, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        # Polling a local path for a few hundred ms; nothing to wait on instead.
        while time.monotonic() < deadline and not path.exists():  # noqa: ASYNC240, ASYNC110
            await asyncio.sleep(0.05)

    async def _spawn(self, child: Child) -> asyncio.subprocess.Process:
        child.log_path = self.log_dir / f"{child.name}.log"
        # A local file opened once per start: no reason to hop to a thread.
        logf = open(child.log_path, "ab")  # noqa: ASYNC230
        try:
            return await asyncio.create_subprocess_exec(
                *child.argv, stdin=asyncio.subprocess.DEVNULL, stdout=logf, stderr=logf,
                env=self.env(), process_group=0, preexec_fn=die_with_parent)
        finally:
            logf.close()

    async def _keep(self, child: Child) -> None:
        while not self._stopping:
            child.proc = await self._spawn(child)
            child.starts += 1
            child.last_start = time.monotonic()
            code = await child.proc.wait()
            child.last_exit = code
            if self._stopping:
                return
            ran = time.monotonic() - child.last_start
            if ran > HEALTHY_RUN_S:
                child.backoff = BACKOFF_FIRST_S
            log.warning("%s exited with code %s after %.1f s; restarting in %.1f s (log: %s)",
                        child.name, code, ran, child.backoff, child.log_path)
            await asyncio.sleep(child.backoff)
            child.backoff = min(child.backoff * 2, BACKOFF_MAX_S)

    async def _watch_adoptions(self) -> None:
        """Start the camera of a GB/T 28181 channel adopted from the dashboard, as systemd
        would be told to on a vehicle: the gb28181 service wrote it to our config."""
        assert self.bus is not None
        async for env in self.bus.subscribe(topics.EVENT_COMMAND):
            event = env.message
            if not (isinstance(event, CommandEvent) and event.service == "gb28181"
                    and event.action == "adopt" and event.status == "accepted"):
                continue
            name = topics.camera_service(event.subject)
            if any(c.name == name for c in self.children):
                continue
            try:
                config = await asyncio.to_thread(load_config, self.config_path)
            except ConfigError as e:
                log.error("camera %s was adopted, but the config no longer loads: %s",
                          event.subject, e)
                continue
            if not any(c.id == event.subject for c in config.cameras):
                log.error("camera %s was adopted, but it is not in %s", event.subject,
                          self.config_path)
                continue
            # In the same network namespace as the platform that invites its device.
            prefix = self.prefixes.get("gb28181", ())
            child = Child(name, [*prefix, *edge_argv("run", name, "--config",
                                                     str(self.config_path))], "service")
            self.config = config
            self.children.append(child)
            log.info("starting %s: adopted from the dashboard", name)
            self._tasks.append(asyncio.create_task(self._keep(child), name=f"keep-{name}"))

    async def _watch_health(self) -> None:
        assert self.bus is not None
        async for env in self.bus.subscribe(topics.SVC):
            if isinstance(env.message, ServiceHealth):
                # Looked up each time: an adopted camera joins the children later.
                child = next((c for c in self.children if c.name == env.message.service), None)
                if child is not None:
                    child.health = env.message

    async def stop(self) -> None:
        """Services first, then simulators, the broker last; SIGKILL after the grace."""
        self._stopping = True
        for c in self.children:
            if c.running and c.proc is not None:
                c.rss_mb, c.pss_mb = memory.rss_mb(c.proc.pid), memory.pss_mb(c.proc.pid)
        self._own_pss_mb = memory.pss_mb(os.getpid())
        order = ([c for c in self.children if c.kind == "service" and c.name != "bus"],
                 [c for c in self.children if c.kind == "simulator"],
                 [c for c in self.children if c.name == "bus"])
        for group in order:
            await self._terminate(group)
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        if self.bus is not None:
            await self.bus.close()

    async def _terminate(self, children: list[Child]) -> None:
        running = [c for c in children if c.running and c.proc is not None]
        for c in running:
            assert c.proc is not None
            with contextlib.suppress(ProcessLookupError):
                os.killpg(c.proc.pid, signal.SIGTERM)
        waits = [c.proc.wait() for c in running if c.proc is not None]
        if not waits:
            return
        _, pending = await asyncio.wait([asyncio.ensure_future(w) for w in waits],
                                        timeout=STOP_GRACE_S)
        for c in running:
            assert c.proc is not None
            if c.proc.returncode is None:
                log.error("%s ignored SIGTERM for %.0f s; killing it", c.name, STOP_GRACE_S)
            # Anything left in the group (the child's own helpers) goes too.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(c.proc.pid, signal.SIGKILL)
        if pending:
            await asyncio.wait(pending, timeout=2.0)

    def summary(self) -> dict[str, Any]:
        return {
            "runtime_dir": str(self.runtime_dir),
            "seconds": round(time.monotonic() - self.started_at, 1),
            "services": {c.name: c.summary() for c in self.children},
            # The whole demo's memory: proportional shares add up, resident sizes would
            # count every shared library once per process.
            "memory_pss_mb": round(sum(c.pss_mb or 0.0 for c in self.children)
                                   + (self._own_pss_mb or 0.0), 1),
        }
