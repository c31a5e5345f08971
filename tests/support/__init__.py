"""Helpers the service and CLI tests share: a hosted service, an inbox, the `edge` command."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import logging
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import pytest

from edge.bus.broker import Broker
from edge.bus.client import BusClient, Subscription
from edge.bus.endpoints import RUNTIME_DIR_ENV, Endpoints
from edge.bus.messages import Message
from edge.config import VehicleConfig, load_config
from edge.runtime.service import Service, ServiceContext, host

REPO = Path(__file__).resolve().parents[2]
M = TypeVar("M", bound=Message)
S = TypeVar("S", bound=Service)


@dataclass
class Hosted(Generic[S]):
    ctx: ServiceContext
    service: S


@asynccontextmanager
async def hosted(cls: type[S], name: str, config: VehicleConfig, config_path: Path,
                 endpoints: Endpoints, *, ready_within: float = 10.0
                 ) -> AsyncIterator[Hosted[S]]:
    """`cls` run by the real service runner in this event loop, stopped as SIGTERM would."""
    instance = name.partition("@")[2] or None
    ctx = ServiceContext(name=name, instance=instance, config=config, config_path=config_path,
                         endpoints=endpoints, bus=BusClient(endpoints, source=name),
                         log=logging.getLogger(name))
    built: list[S] = []
    stop = asyncio.Event()
    task = asyncio.create_task(host(cls, ctx, stop, on_built=built.append))  # type: ignore[arg-type]
    ready = asyncio.create_task(ctx._ready.wait())
    await asyncio.wait({task, ready}, timeout=ready_within, return_when=asyncio.FIRST_COMPLETED)
    ready.cancel()
    if not ctx._ready.is_set():
        stop.set()
        code = await asyncio.wait_for(task, 6)
        raise AssertionError(f"{name} did not get ready (exit {code})")
    try:
        yield Hosted(ctx, built[0])
    finally:
        stop.set()
        assert await asyncio.wait_for(task, 6) == 0, f"{name} did not stop cleanly"


class Inbox:
    """Everything a subscription delivered, kept, so one wait does not eat another's message."""

    def __init__(self, sub: Subscription) -> None:
        self.sub = sub
        self.seen: list[tuple[str, Message, list[bytes]]] = []

    def mark(self) -> int:
        """A point in the history; `expect(since=mark)` looks only at what came after it."""
        return len(self.seen)

    async def mark_now(self, quiet_s: float = 0.05) -> int:
        """`mark` after reading what is already queued: a message published long before
        but not yet read would otherwise count as coming after the mark."""
        while True:
            try:
                async with asyncio.timeout(quiet_s):
                    env = await self.sub.recv()
            except TimeoutError:
                return len(self.seen)
            if env.message is not None:
                self.seen.append((env.topic, env.message, env.blobs))

    async def expect(self, kind: type[M], where: Callable[[M], bool] = lambda m: True,
                     within: float = 10.0, topic: str | None = None, since: int = 0) -> M:
        return (await self.expect_env(kind, where, within, topic, since))[0]

    async def expect_env(self, kind: type[M], where: Callable[[M], bool] = lambda m: True,
                         within: float = 10.0, topic: str | None = None,
                         since: int = 0) -> tuple[M, list[bytes]]:
        def match(item: tuple[str, Message, list[bytes]]) -> tuple[M, list[bytes]] | None:
            t, m, blobs = item
            if isinstance(m, kind) and (topic is None or t == topic) and where(m):
                return m, blobs
            return None

        for item in self.seen[since:]:
            if (found := match(item)) is not None:
                return found

        async def more() -> tuple[M, list[bytes]]:
            while True:
                env = await self.sub.recv()
                if env.message is None:
                    continue
                self.seen.append((env.topic, env.message, env.blobs))
                if (found := match(self.seen[-1])) is not None:
                    return found

        return await asyncio.wait_for(more(), within)

    async def count(self, kind: type[Message], seconds: float) -> int:
        """How many `kind` messages arrive in the next `seconds`."""
        start = self.mark()
        with contextlib.suppress(TimeoutError):
            await self.expect(Message, lambda m: False, within=seconds, since=start)
        return sum(1 for _, m, _ in self.seen[start:] if isinstance(m, kind))

    def all(self, kind: type[M]) -> list[M]:
        return [m for _, m, _ in self.seen if isinstance(m, kind)]


# Below Linux's ephemeral range (32768-60999): a port the kernel hands out as the source
# of some process's outgoing connection is free when checked and taken when a server
# binds it a moment later (it failed a 3-node NATS test in CI). Not 30000+: the gb28181
# tests' RTP range.
FREE_PORTS = range(20000, 30000)


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port nothing listens on right now (TCP by default, or `socket.SOCK_DGRAM`)."""
    for _ in range(200):
        port = random.choice(FREE_PORTS)
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {FREE_PORTS}")


async def run_edge(*args: str, env: dict[str, str] | None = None,
                   timeout: float = 30) -> tuple[int, str, str]:
    """`edge ARGS` as a user runs it: its exit code, stdout and stderr."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "edge", *args, cwd=REPO, env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


# -- a whole demo as a subprocess: private ports, found and cleaned up by its environment ----


DEMO_CONFIG = REPO / "config" / "demo.toml"
_LOCAL_PORT = re.compile(r"(?<=127\.0\.0\.1:)(\d+)")


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"no TOML for {type(value).__name__}")


def toml_text(data: dict[str, object]) -> str:
    """`data` as TOML, every value inline on its key's line (enough for vehicle configs)."""
    return "".join(f"{key} = {_toml_value(value)}\n" for key, value in data.items())


def demo_config_copy(dest: Path, *, cameras: list[str] | None = None,
                     drones: list[str] | None = None, links: list[str] | None = None,
                     uplink: bool = True, emulate_links: bool = False) -> Path:
    """config/demo.toml written into `dest` with every local port replaced by a free one, so
    that it runs beside anyone else's demo; optionally only the named cameras, drone links
    and WAN links (with their simulators). The WAN links are emulated (namespaces, a local
    `edge centre`, as `make demo` does as root) only when asked: most tests are about
    something else, or build their own emulated world. The token file is copied beside
    it, as is every other secret file it names. Returns its path."""
    data: dict[str, Any] = tomllib.loads(DEMO_CONFIG.read_text())
    demo = data.setdefault("demo", {})
    if not emulate_links:
        demo.pop("sim_links", None)
    if links is not None:
        data["links"] = [link for link in data.get("links", []) if link["id"] in links]
        policy = data.setdefault("link_policy", {})
        policy["prefer"] = [i for i in policy.get("prefer", []) if i in links]
        demo["sim_links"] = [s for s in demo.get("sim_links", []) if s["link"] in links]
    if cameras is not None:
        data["cameras"] = [c for c in data.get("cameras", []) if c["id"] in cameras]
        demo["sim_cameras"] = [c for c in demo.get("sim_cameras", []) if c["name"] in cameras]
        # A GB/T 28181 device's simulator, and the platform, only for a camera that reads it.
        gb_devices = {str(source["gb28181"]).partition("/")[0]
                      for c in data["cameras"] for key in ("main", "sub")
                      if isinstance(source := c.get(key), dict) and "gb28181" in source}
        demo["sim_gb28181"] = [d for d in demo.get("sim_gb28181", []) if d["id"] in gb_devices]
        if not gb_devices:
            data.pop("gb28181", None)
    if drones is not None:
        data["drones"] = [d for d in data.get("drones", []) if d["id"] in drones]
        connections = {d["connection"] for d in data["drones"]}
        demo["sim_drones"] = [d for d in demo.get("sim_drones", [])
                              if d["connection"] in connections]
    served = {f"127.0.0.1:{c['port']}" for c in demo.get("sim_cameras", [])}
    for sim in demo.get("sim_drones", []):
        if "camera" in sim and _LOCAL_PORT.search(sim["camera"]) and not any(
                s in sim["camera"] for s in served):
            del sim["camera"]  # its camera's simulator is not in this copy
    if not uplink:
        data["uplink"] = {"enabled": False}
    ports: dict[str, str] = {}

    def remap(port: str) -> str:
        if port not in ports:
            ports[port] = str(free_port())
        return ports[port]

    def walk(value: Any) -> Any:
        if isinstance(value, str):
            return _LOCAL_PORT.sub(lambda m: remap(m.group(1)), value)
        if isinstance(value, list):
            return [walk(v) for v in value]
        if isinstance(value, dict):
            return {k: walk(v) for k, v in value.items()}
        return value

    data = walk(data)
    for sim in data.get("demo", {}).get("sim_cameras", []):
        for key in ("port", "onvif_port"):
            if key in sim:
                sim[key] = int(remap(str(sim[key])))
    dest.mkdir(parents=True, exist_ok=True)
    for secret in _secret_files(data):
        shutil.copy(DEMO_CONFIG.parent / secret, dest / secret)
    path = dest / "demo.toml"
    path.write_text(toml_text(data))
    return path


def _secret_files(value: Any) -> set[str]:
    """The relative files of every secret reference (`{ file = "…" }`) in config data."""
    if isinstance(value, dict):
        if set(value) == {"file"} and isinstance(value["file"], str) \
                and not Path(value["file"]).is_absolute():
            return {value["file"]}
        return set().union(*map(_secret_files, value.values()))
    if isinstance(value, list):
        return set().union(*map(_secret_files, value))
    return set()


def _proc_items() -> Iterator[tuple[int, bytes, list[bytes], str]]:
    """(pid, environ, argv, state) of every process this user can read, zombies included."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            env = (entry / "environ").read_bytes()
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().rpartition(")")[2].split()[0]
        except OSError:
            continue
        yield int(entry.name), env, argv, state


def processes_with_env(name: str, value: str) -> dict[int, str]:
    """Live processes whose environment holds `name=value` (pid -> command line). A child
    re-parented to init keeps its environment, so this finds orphans too."""
    needle = f"{name}={value}".encode()
    return {pid: b" ".join(argv).decode(errors="replace").strip()
            for pid, env, argv, state in _proc_items()
            if state != "Z" and pid != os.getpid() and needle in env.split(b"\0")}


def demo_processes(runtime_dir: str | Path) -> dict[int, str]:
    """Every live process a demo started: each carries its runtime dir in EDGE_RUNTIME_DIR."""
    return processes_with_env(RUNTIME_DIR_ENV, str(runtime_dir))


@dataclass
class DemoRun:
    """`edge demo --headless` running as a subprocess (see :func:`running_demo`)."""

    proc: subprocess.Popen[bytes]
    config_path: Path
    config: VehicleConfig
    runtime_dir: Path
    stdout: Path
    stderr: Path
    summary: dict[str, Any] | None = None

    @property
    def endpoints(self) -> Endpoints:
        return Endpoints.from_config(self.config.bus, self.runtime_dir)

    def pid_of(self, *argv: str) -> int | None:
        """The live child of this demo whose command line holds `argv` in order, e.g.
        ("run", "camera@north-gate") or ("sim", "drone"); None if there is none."""
        want = [a.encode() for a in argv]
        needle = f"{RUNTIME_DIR_ENV}={self.runtime_dir}".encode()
        for pid, env, args, state in _proc_items():
            if state == "Z" or needle not in env.split(b"\0"):
                continue
            if any(args[i:i + len(want)] == want for i in range(len(args))):
                return pid
        return None

    def log(self, child: str) -> str:
        """A child's log (the supervisor keeps one a child in the runtime dir)."""
        try:
            return (self.runtime_dir / "logs" / f"{child}.log").read_text(errors="replace")
        except OSError:
            return ""

    def output(self) -> str:
        return self.stderr.read_text(errors="replace") if self.stderr.exists() else ""


async def wait_for_pid(demo: DemoRun, *argv: str, timeout: float = 30.0,
                       other_than: int | None = None) -> int:
    """The pid of the demo child with `argv`, waiting for it (a new one: not `other_than`)."""
    found: list[int] = []

    def check() -> bool:
        pid = demo.pid_of(*argv)
        if pid is not None and pid != other_than:
            found.append(pid)
            return True
        return False

    await eventually(check,
                     within=timeout,
                     what=f"a{' new' if other_than else ''} process {' '.join(argv)!r} "
                     f"in the demo")
    return found[-1]


async def kill9(pid: int, timeout: float = 10.0) -> None:
    """SIGKILL `pid` and wait until it is gone (reaped by its parent or a zombie)."""
    os.kill(pid, signal.SIGKILL)

    def gone() -> bool:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
        except OSError:
            return True
        return state == "Z"

    await eventually(gone, within=timeout, what=f"pid {pid} to die after SIGKILL", every=0.02)


def die_with_test() -> None:
    # In the demo between fork and exec: should the test process die without cleaning up
    # (a pytest-timeout, a crash), the demo gets SIGTERM and stops its children itself.
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _spawn_demo(config_path: Path, workdir: Path, extra: tuple[str, ...],
                prefix: Sequence[str] = ()) -> tuple[subprocess.Popen[bytes], Path, Path]:
    workdir.mkdir(parents=True, exist_ok=True)
    out, err = workdir / "demo.stdout", workdir / "demo.stderr"
    # Files, not pipes: nobody reads a pipe while the test runs, and a full one would
    # block the supervisor's logging.
    with open(out, "wb") as o, open(err, "wb") as e:
        proc = subprocess.Popen([*prefix, sys.executable, "-m", "edge", "demo", "--headless",
                                 "--config", str(config_path), *extra], cwd=REPO,
                                stdin=subprocess.DEVNULL,
                                stdout=o, stderr=e, start_new_session=True,
                                preexec_fn=die_with_test)
    return proc, out, err


def _announced_runtime_dir(err: Path) -> Path | None:
    m = re.search(r"logs in (\S+)", err.read_text(errors="replace"))
    return Path(m.group(1)) if m else None


def _kill_leftovers(runtime_dir: Path) -> None:
    for pid in demo_processes(runtime_dir):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGCONT)  # a test may have stopped one
            os.kill(pid, signal.SIGKILL)
    shutil.rmtree(runtime_dir, ignore_errors=True)


@asynccontextmanager
async def running_demo(config_path: Path, workdir: Path, *extra: str,
                       stop_within: float = 30.0, prefix: Sequence[str] = ()
                       ) -> AsyncIterator[DemoRun]:
    """`edge demo --headless --config CONFIG` until the block ends; then SIGINT (as Ctrl-C)
    and its JSON summary in `.summary`. Whatever happens, nothing it started outlives the
    block: leftovers (found by their environment) are SIGKILLed. `prefix` goes before the
    command, e.g. ``netns.exec_prefix(ns)`` to run the demo in a network namespace (it
    must exec the command, so that the demo keeps the pid the test signals)."""
    proc, out, err = _spawn_demo(config_path, workdir, extra, prefix)
    runtime_dir: Path | None = None
    try:
        deadline = time.monotonic() + 20
        while (runtime_dir := _announced_runtime_dir(err)) is None:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"edge demo did not start (exit {proc.returncode}):\n"
                                     f"{err.read_text(errors='replace')[-3000:]}")
            await asyncio.sleep(0.05)
        demo = DemoRun(proc, config_path, load_config(config_path), runtime_dir, out, err)
        yield demo
        proc.send_signal(signal.SIGINT)
        code = await asyncio.to_thread(proc.wait, stop_within)
        assert code == 0, f"edge demo exited {code}:\n{demo.output()[-3000:]}"
        lines = out.read_text().strip().splitlines()
        assert lines, f"edge demo printed no summary:\n{demo.output()[-3000:]}"
        demo.summary = json.loads(lines[-1])
    finally:
        if proc.poll() is None:
            proc.kill()
            await asyncio.to_thread(proc.wait, 10)
        if runtime_dir is not None:
            _kill_leftovers(runtime_dir)


# -- waiting on a condition, and skips that CI turns into failures -----------------------------

T = TypeVar("T")


async def eventually(predicate: Callable[[], T], within: float = 10.0,
                     what: str = "the condition", every: float = 0.05) -> T:
    """Poll `predicate()` until its value is truthy, and return that value.

    For state that has no event to wait on. `within` only keeps a broken test from hanging:
    make it generous (a loaded machine is slow, not wrong); it is never a timing check.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not (value := predicate()):
        if loop.time() >= deadline:
            raise AssertionError(f"timed out after {within:g} s waiting for {what}")
        await asyncio.sleep(every)
    return value


def eventually_sync(predicate: Callable[[], T], within: float = 10.0,
                    what: str = "the condition", every: float = 0.05) -> T:
    """:func:`eventually` for code without an event loop (it blocks the thread)."""
    deadline = time.monotonic() + within
    while not (value := predicate()):
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {within:g} s waiting for {what}")
        time.sleep(every)
    return value


async def expect_sending(inbox: Inbox, kind: type[M], send: Callable[[], object],
                         where: Callable[[M], bool] = lambda m: True, within: float = 10.0,
                         every: float = 0.25, topic: str | None = None) -> M:
    """Call `send()` again every `every` s until `inbox` receives a matching message.

    For topics the broker does not cache (alerts, marks): a subscription still on its way
    to the publisher misses what is sent before it arrives (ZeroMQ's "slow joiner"), so
    the sender repeats instead of the test sleeping and hoping.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    start = inbox.mark()
    while True:
        send()
        try:
            wait = max(0.01, min(every, deadline - loop.time()))
            return await inbox.expect(kind, where, within=wait, topic=topic, since=start)
        except TimeoutError:
            if loop.time() >= deadline:
                raise AssertionError(f"no {kind.__name__} arrived within {within:g} s "
                                     f"of sending it again every {every:g} s") from None


def in_ci() -> bool:
    """True on CI (`CI` set to anything non-empty), where .ci/run installed every tool."""
    return bool(os.environ.get("CI"))


def require(condition: object, reason: str) -> None:
    """Skip the test unless `condition` holds; on CI, fail it instead.

    .ci/run installs every package the tests need (Chromium, tmux, systemd-analyze,
    GStreamer), so there a missing one is a broken install step, not a reason to pass.
    """
    if condition:
        return
    if in_ci():
        pytest.fail(f"{reason}; CI is set, and .ci/run should have installed it", pytrace=False)
    pytest.skip(reason)


def standing_still(read: Callable[[], object], looks: int = 3) -> Callable[[], bool]:
    """A predicate for :func:`eventually`: true once `read()` gave the same value `looks`
    times running. For "it has stopped" (a count that no longer moves), which no event says.
    Poll it with an `every` long next to the thing's own pace (several of its steps), so
    that a still count means stopped, not merely between two steps."""
    seen: list[object] = []

    def check() -> bool:
        seen.append(read())
        return len(seen) >= looks and all(v == seen[-1] for v in seen[-looks:])

    return check


# -- a broker of our own: stopped and started again on the same endpoints -----------------
class BrokerHandle:
    """A real broker in a thread; `stop()` and `start()` again on the same endpoints."""

    def __init__(self, endpoints: Endpoints) -> None:
        self.endpoints = endpoints
        self.broker: Broker | None = None
        self.thread: threading.Thread | None = None

    def start(self) -> Broker:
        b = Broker(self.endpoints)
        b.bind()
        t = threading.Thread(target=b.run, daemon=True, name="test-broker")
        t.start()
        self.broker, self.thread = b, t
        return b

    def stop(self) -> None:
        if self.broker is None or self.thread is None:
            return
        self.broker.stop()
        self.thread.join(5)
        assert not self.thread.is_alive(), "broker did not stop"
        self.broker = self.thread = None


@contextmanager
def running_broker(endpoints: Endpoints) -> Iterator[Broker]:
    """A broker for the length of a `with` block."""
    handle = BrokerHandle(endpoints)
    broker = handle.start()
    try:
        yield broker
    finally:
        handle.stop()
