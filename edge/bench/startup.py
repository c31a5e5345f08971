"""`edge bench startup`: how long each kind of process takes to start, and its memory.

Each measured process is a fresh ``python -m edge ...``, as systemd and ``edge demo``
start them, on a private runtime dir with a generated config (one camera, one drone
link, nothing else):

- **baseline**: ``python -c "import zmq, msgpack"`` to its exit: the least any
  process of ours does (an interpreter and the two libraries every one of them needs);
- ``edge --help`` to its exit;
- ``edge run bus`` to ready: ``READY=1`` on the ``$NOTIFY_SOCKET`` we give it (the
  runtime's sd_notify, sent when the service says it serves);
- ``edge run camera@bench`` against ``edge sim camera`` (started and ready before, not
  measured): to ready, and to its first ``live`` :class:`CameraStatus` (by the
  message's own stamp, so a subscription that joins late does not make it later);
- ``edge run drone@bench`` against ``edge sim drone``: the same, with ``DroneStatus``.

Wall time runs from just before the process is created. CPU is the process's user +
system time at that moment (``/proc``; of a process that exited, ``wait4``'s), which
a busy shared machine inflates less than wall time. Resident memory is VmRSS
(:func:`edge.runtime.memory.rss_mb`) of a service ``--settle`` seconds after its
last milestone, just before it is stopped (the bus at the end of a run, having
carried the camera and the drone); of a process that exited, its peak
(``ru_maxrss``). The services are measured one at a time, each stopped before the
next starts, so one's start does not slow another's. With ``--runs N`` every figure
is the median of N runs. Ratios are against the baseline of the same command:
machines here are shared, absolute figures drift.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.bench import arguments
from edge.runtime import ports
from edge.runtime.memory import MALLOC_ENV, rss_mb
from edge.runtime.processes import output_tail, stop_process

CAMERA = "bench"
DRONE_LINK = "bench"
BASELINE_CODE = "import zmq, msgpack"
# Issue 17's goals for these processes (seconds, MB); reported beside, never enforced.
GOALS: dict[str, dict[str, float]] = {"help": {"exit_s": 0.3},
                                      "bus": {"ready_s": 0.5, "rss_mb": 40.0},
                                      "camera": {"rss_mb": 60.0}, "drone": {"rss_mb": 50.0}}
# Generous: a first encode of the simulated camera's loop (when not cached on disk) and
# a busy shared 2-core machine; none of these is a figure, only when to give up.
SIM_TIMEOUT_S = 120.0
READY_TIMEOUT_S = 30.0
LIVE_TIMEOUT_S = 30.0
EXIT_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 6.0  # the runtime stops a service within 4 s


def _problem(text: str) -> Exception:
    from edge.cli import OperatorError

    return OperatorError(text)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a running process, all its threads (0 when gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _config(runtime: Path, rtsp_port: int, mavlink_port: int) -> Path:
    lines = ['vehicle = "bench"', "[bus]", f"runtime_dir = {json.dumps(str(runtime))}",
             "[[cameras]]", f'id = "{CAMERA}"', 'name = "Bench camera"',
             f'main = "rtsp://127.0.0.1:{rtsp_port}/{CAMERA}/main"',
             f'sub = "rtsp://127.0.0.1:{rtsp_port}/{CAMERA}/sub"',
             "[[drones]]", f'id = "{DRONE_LINK}"', 'name = "Bench drone"',
             f'connection = "tcp:127.0.0.1:{mavlink_port}"']
    path = runtime / "vehicle.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


@dataclass
class World:
    """The private runtime dir, its config and the environment every child gets."""

    runtime: Path
    config: Path
    env: dict[str, str]
    sims: list[asyncio.subprocess.Process] = field(default_factory=list)

    def log(self, name: str) -> Path:
        return self.runtime / f"{name}.log"


# --------------------------------------------------------------------------- exiting processes

# A bare interpreter that starts each exiting process and reports what wait4 says of it.
# Not us: a child's ru_maxrss counts the memory of the process it was forked from (the
# kernel keeps the old mm's high-water mark across exec), and we hold 100 MB; this
# launcher holds about 11 MB, less than any process measured, so the peak is the
# child's own.
LAUNCHER = """
import json, os, signal, sys, time
for line in sys.stdin:
    job = json.loads(line)
    log = os.open(job["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    t0 = time.perf_counter()
    pid = os.posix_spawn(job["argv"][0], job["argv"], os.environ, file_actions=[
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
        (os.POSIX_SPAWN_DUP2, log, 2)])
    # Stopped (the bench gave up or was interrupted): the child goes too.
    signal.signal(signal.SIGTERM, lambda *_: (os.kill(pid, signal.SIGKILL), os._exit(1)))
    _, status, usage = os.wait4(pid, 0)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    wall = time.perf_counter() - t0
    os.close(log)
    print(json.dumps({"exit_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime,
                      "rss_mb": usage.ru_maxrss / 1024,
                      "code": os.waitstatus_to_exitcode(status)}), flush=True)
"""


class Launcher:
    def __init__(self, world: World) -> None:
        self.world = world
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        with open(self.world.log("launcher"), "ab") as log:  # noqa: ASYNC230 - a local file
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-c", LAUNCHER, stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE, stderr=log, env=self.world.env)

    async def measure(self, name: str, argv: list[str]) -> dict[str, float]:
        """Wall time, CPU and peak RSS of a process that runs to its exit."""
        assert self.proc is not None and self.proc.stdin and self.proc.stdout
        log = self.world.log(name)
        self.proc.stdin.write(json.dumps({"argv": argv, "log": str(log)}).encode() + b"\n")
        await self.proc.stdin.drain()
        try:
            line = await asyncio.wait_for(self.proc.stdout.readline(), EXIT_TIMEOUT_S)
        except TimeoutError:
            raise _problem(f"{name} did not exit within {EXIT_TIMEOUT_S:.0f} s:\n"
                           f"{output_tail(log)}") from None
        if not line:
            raise _problem(f"the launcher exited:\n{output_tail(self.world.log('launcher'))}")
        figures: dict[str, float] = json.loads(line)
        code = figures.pop("code")
        if code != 0:
            raise _problem(f"{name} exited with {code:g}:\n{output_tail(log)}")
        return figures

    async def close(self) -> None:
        if self.proc is not None:
            if self.proc.stdin is not None:
                self.proc.stdin.close()
            await _stop(self.proc)


# --------------------------------------------------------------------------- services

async def _stop(proc: asyncio.subprocess.Process) -> None:
    await stop_process(proc, STOP_TIMEOUT_S)


class Started:
    """One `edge run NAME` child with a notify socket of its own."""

    def __init__(self, world: World, name: str) -> None:
        self.world = world
        self.name = name
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self.sock.setblocking(False)
        self.sock_path = world.runtime / f"notify-{name.replace('@', '-')}.sock"
        self.sock.bind(str(self.sock_path))
        self.proc: asyncio.subprocess.Process | None = None
        self.t0 = 0.0
        self.t0_wall_ns = 0

    async def start(self) -> None:
        env = dict(self.world.env, NOTIFY_SOCKET=str(self.sock_path))
        with open(self.world.log(self.name), "ab") as log:  # noqa: ASYNC230 - a local file
            self.t0_wall_ns = time.time_ns()
            self.t0 = time.perf_counter()
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "edge", "run", self.name, "--config",
                str(self.world.config), stdin=asyncio.subprocess.DEVNULL, stdout=log,
                stderr=log, env=env)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def check_alive(self) -> None:
        assert self.proc is not None
        if self.proc.returncode is not None:
            raise _problem(f"{self.name} exited with {self.proc.returncode}:\n"
                           f"{output_tail(self.world.log(self.name))}")

    async def ready(self) -> float:
        """Seconds from the start to its READY=1."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + READY_TIMEOUT_S
        while True:
            self.check_alive()
            left = deadline - loop.time()
            if left <= 0:
                raise _problem(f"{self.name} did not say READY=1 within {READY_TIMEOUT_S:.0f} s:"
                               f"\n{output_tail(self.world.log(self.name))}")
            try:
                # Short waits: a child that dies is noticed within a quarter second.
                data = await asyncio.wait_for(loop.sock_recv(self.sock, 4096), min(left, 0.25))
            except TimeoutError:
                continue
            if b"READY=1" in data.split(b"\n"):
                return time.perf_counter() - self.t0

    async def stop(self) -> None:
        if self.proc is not None:
            await _stop(self.proc)
        self.sock.close()
        with contextlib.suppress(FileNotFoundError):
            self.sock_path.unlink()


class LiveWatch:
    """The bus stamp of the first `live` status of the camera and of the drone link."""

    def __init__(self, world: World) -> None:
        from edge.bus import topics
        from edge.bus.client import BusClient
        from edge.bus.endpoints import Endpoints
        from edge.config import BusConfig

        self.bus = BusClient(Endpoints.from_config(BusConfig(), world.runtime),
                             source="bench-startup")
        self.first_live_ns: dict[str, list[int]] = {"camera": [], "drone": []}
        self._sub = self.bus.subscribe(topics.cam_status(CAMERA), topics.DRONE)
        self._task = asyncio.create_task(self._watch(), name="live-watch")

    async def _watch(self) -> None:
        from edge.bus.messages import CameraStatus, DroneStatus

        async for env in self._sub:
            m = env.message
            if isinstance(m, CameraStatus) and m.camera_id == CAMERA and m.state == "live":
                self.first_live_ns["camera"].append(env.header.ts_ns)
            elif isinstance(m, DroneStatus) and m.link == DRONE_LINK and m.state == "live":
                self.first_live_ns["drone"].append(env.header.ts_ns)

    async def live(self, kind: str, service: Started) -> float:
        """Seconds from the service's start to its first `live` status stamped after it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + LIVE_TIMEOUT_S
        while loop.time() < deadline:
            service.check_alive()
            stamps = [s for s in self.first_live_ns[kind] if s >= service.t0_wall_ns]
            if stamps:
                return (min(stamps) - service.t0_wall_ns) / 1e9
            await asyncio.sleep(0.05)  # a dict filled by the watch task: nothing to await
        raise _problem(f"{service.name} did not report live within {LIVE_TIMEOUT_S:.0f} s:\n"
                       f"{output_tail(service.world.log(service.name))}")

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        await self.bus.close()


# --------------------------------------------------------------------------- simulators

async def _start_sim(world: World, name: str, *argv: str) -> asyncio.subprocess.Process:
    with open(world.log(name), "ab") as log:  # noqa: ASYNC230 - a local file, once
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "edge", "sim", *argv, stdin=asyncio.subprocess.DEVNULL,
            stdout=log, stderr=log, env=world.env)
    world.sims.append(proc)
    return proc


async def _rtsp_ok(port: int, path: str) -> bool:
    """Whether the simulated camera answers DESCRIBE with 200 (503 until its loop is ready)."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    try:
        writer.write(f"DESCRIBE rtsp://127.0.0.1:{port}/{path} RTSP/1.0\r\nCSeq: 1\r\n"
                     "Accept: application/sdp\r\n\r\n".encode())
        line = await asyncio.wait_for(reader.readline(), 5.0)
        return line.split()[1:2] == [b"200"]
    except (OSError, TimeoutError):
        return False
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def _until(name: str, world: World, proc: asyncio.subprocess.Process,
                 check: Callable[[], Awaitable[bool]]) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + SIM_TIMEOUT_S
    while not await check():
        if proc.returncode is not None:
            raise _problem(f"{name} exited with {proc.returncode}:\n{output_tail(world.log(name))}")
        if loop.time() > deadline:
            raise _problem(f"{name} was not ready within {SIM_TIMEOUT_S:.0f} s:\n"
                           f"{output_tail(world.log(name))}")
        await asyncio.sleep(0.2)


async def _start_sims(world: World, rtsp_port: int, mavlink_port: int) -> None:
    cam = await _start_sim(world, "sim-camera", "camera", "--name", CAMERA,
                           "--port", str(rtsp_port))
    drone = await _start_sim(world, "sim-drone", "drone", "--connection",
                             f"tcp:127.0.0.1:{mavlink_port}")
    await _until("sim-camera", world, cam, lambda: _rtsp_ok(rtsp_port, f"{CAMERA}/main"))
    await _until("sim-camera", world, cam, lambda: _rtsp_ok(rtsp_port, f"{CAMERA}/sub"))
    await _until("sim-drone", world, drone, lambda: ports.answers(mavlink_port))


# --------------------------------------------------------------------------- one run

async def _service(world: World, name: str, watch: LiveWatch | None, kind: str,
                   settle_s: float) -> dict[str, float]:
    svc = Started(world, name)
    try:
        await svc.start()
        figures = {"ready_s": await svc.ready(), "cpu_s": _proc_cpu_s(svc.pid)}
        if watch is not None:
            figures["live_s"] = await watch.live(kind, svc)
            figures["cpu_s"] = _proc_cpu_s(svc.pid)
        await asyncio.sleep(settle_s)
        svc.check_alive()
        figures["rss_mb"] = rss_mb(svc.pid) or 0.0
        return figures
    finally:
        await svc.stop()


async def _one_run(world: World, launcher: Launcher,
                   settle_s: float) -> dict[str, dict[str, float]]:
    figures = {
        "baseline": await launcher.measure("baseline", [sys.executable, "-c", BASELINE_CODE]),
        "help": await launcher.measure("help", [sys.executable, "-m", "edge", "--help"]),
    }
    bus = Started(world, "bus")
    watch: LiveWatch | None = None
    try:
        await bus.start()
        figures["bus"] = {"ready_s": await bus.ready(), "cpu_s": _proc_cpu_s(bus.pid)}
        watch = LiveWatch(world)
        figures["camera"] = await _service(world, f"camera@{CAMERA}", watch, "camera", settle_s)
        figures["drone"] = await _service(world, f"drone@{DRONE_LINK}", watch, "drone", settle_s)
        bus.check_alive()
        figures["bus"]["rss_mb"] = rss_mb(bus.pid) or 0.0
    finally:
        if watch is not None:
            await watch.close()
        await bus.stop()
    return figures


# --------------------------------------------------------------------------- report

ROWS = (("baseline", f'python -c "{BASELINE_CODE}"', "exit_s"),
        ("help", "edge --help", "exit_s"),
        ("bus", "edge run bus", "ready_s"),
        ("camera", f"edge run camera@{CAMERA}", "ready_s"),
        ("camera", "  ... first live status", "live_s"),
        ("drone", f"edge run drone@{DRONE_LINK}", "ready_s"),
        ("drone", "  ... first live status", "live_s"))


def _median(runs: list[dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    return {proc: {k: statistics.median(r[proc][k] for r in runs) for k in runs[0][proc]}
            for proc in runs[0]}


def report(runs: list[dict[str, dict[str, float]]], settle_s: float) -> dict[str, Any]:
    """Print the table; the JSON summary."""
    fig = _median(runs)
    base = fig["baseline"]
    out: dict[str, dict[str, float]] = {}
    for proc, values in fig.items():
        out[proc] = {k: round(v, 3) for k, v in values.items()}
        out[proc]["rss_mb"] = round(values["rss_mb"], 1)
        if proc == "baseline":
            continue
        for key in ("exit_s", "ready_s", "live_s"):
            if key in values and base["exit_s"]:
                out[proc][key.replace("_s", "_ratio")] = round(values[key] / base["exit_s"], 1)
        if base["rss_mb"]:
            out[proc]["rss_ratio"] = round(values["rss_mb"] / base["rss_mb"], 1)
    met = {f"{proc}_{key}": bool(fig[proc][key] <= limit)
           for proc, limits in GOALS.items() for key, limit in limits.items()}
    print(f"{'process':34} {'wall s':>7} {'x base':>7} {'CPU s':>6} {'RSS MB':>7} {'x base':>7}"
          "  goal")
    for proc, label, key in ROWS:
        values = fig[proc]
        first = key != "live_s"  # the process's own row: its CPU, memory and their goals
        goals = [f"{k} <= {limit:g}: {'met' if met[f'{proc}_{k}'] else 'MISSED'}"
                 for k, limit in GOALS.get(proc, {}).items()
                 if k == key or (first and k == "rss_mb")]
        ratio = values[key] / base["exit_s"] if base["exit_s"] else 0.0
        line = f"{label:34} {values[key]:7.2f} {ratio:7.1f}"
        if first:
            rss_ratio = values["rss_mb"] / base["rss_mb"] if base["rss_mb"] else 0.0
            line += f" {values['cpu_s']:6.2f} {values['rss_mb']:7.1f} {rss_ratio:7.1f}"
        else:
            line += " " * 23
        print(f"{line}  {'; '.join(goals)}".rstrip())
    return {"bench": "startup", "runs": len(runs), "settle_s": settle_s,
            "baseline": out.pop("baseline"), "processes": out,
            "goals": GOALS, "goals_met": met}


async def _run(runs: int, settle_s: float, keep: bool) -> dict[str, Any]:
    from edge.bus.endpoints import RUNTIME_DIR_ENV

    runtime = Path(tempfile.mkdtemp(prefix="edge-bstart-"))
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    for key, value in MALLOC_ENV.items():
        env.setdefault(key, value)  # as systemd and `edge demo` start them
    env[RUNTIME_DIR_ENV] = str(runtime)
    env.pop("NOTIFY_SOCKET", None)
    rtsp_port, mavlink_port = _free_port(), _free_port()
    world = World(runtime, _config(runtime, rtsp_port, mavlink_port), env)
    results: list[dict[str, dict[str, float]]] = []
    launcher = Launcher(world)
    try:
        await launcher.start()
        await _start_sims(world, rtsp_port, mavlink_port)
        for _ in range(runs):
            results.append(await _one_run(world, launcher, settle_s))
    finally:
        await launcher.close()
        for proc in world.sims:
            await _stop(proc)
        if keep:
            print(f"edge bench startup: logs kept in {runtime}", file=sys.stderr)
        else:
            import shutil

            shutil.rmtree(runtime, ignore_errors=True)
    return report(results, settle_s)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "startup", help="start-up time and memory of edge --help, the bus, a camera and a "
                        "drone service against a bare interpreter")
    p.add_argument("--runs", type=arguments.runs, default=3,
                   help="runs; each figure is the median (default 3)")
    p.add_argument("--settle", type=arguments.seconds(0, 600), default=2.0, metavar="S",
                   help="seconds a service runs after its last milestone before its memory "
                        "is read (default 2)")
    p.add_argument("--keep", action="store_true", help="keep the runtime dir and its logs")
    p.set_defaults(func=cmd_bench_startup)


def cmd_bench_startup(args: argparse.Namespace) -> int:
    result = asyncio.run(_run(args.runs, args.settle, args.keep))
    print(json.dumps(result))
    return 0

