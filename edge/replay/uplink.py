"""A WHEP uplink on the replay vehicle, so the city centre can follow a debrief in a browser.

The real uplink (``edge run uplink``) runs as a child process against the replay's
bus and media plane, exactly as the vehicle runs it against the live ones: it
learns the cameras and their streams from the replayed ``cam/<id>/status`` and
``cam/<id>/<profile>/stream`` messages (whose endpoints the bus player rewrites to
the replay plane). A process rather than a task in the replay's loop, so that
aiortc's work (packetising, SRTP, NACKs) never competes with the players' pacing,
and the uplink stays the one the vehicle runs, untouched.

Its config is generated into the replay's private runtime dir: the session's
cameras (names, positions and uplink profiles from the vehicle config when it
names them; their RTSP URLs are never opened), the listen address given, a fresh
token in a file beside it (mode 0600), and the vehicle's ``[uplink]`` tuning. No
``[bus]`` section: ``$EDGE_RUNTIME_DIR`` points the child at the replay's bus.
TLS and ICE servers are not carried over (their secrets are relative to the
vehicle's config): a replay uplink is plain HTTP, for a debrief on a trusted network.

The default port is 8810, not the vehicle's 8800: a replay runs beside a live
vehicle whose uplink holds 8800, and the centre must not mistake one for the other.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import secrets
import signal
import sys
import time
from pathlib import Path

from edge.bus.endpoints import RUNTIME_DIR_ENV
from edge.config import VehicleConfig
from edge.config.addresses import check_host_port

DEFAULT_PORT = 8810
TOKEN_FILE = "replay-uplink.token"
CONFIG_FILE = "replay-uplink.toml"
LOG_FILE = "replay-uplink.log"
# Importing aiortc and binding take a few seconds on a loaded 2-core vehicle PC.
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 8.0
# The child logs JSON lines: the URL ends at the string's closing quote.
_SERVING = re.compile(r"serving WHEP on (https?://[^\s\"'\\]+)")


class ReplayUplinkError(Exception):
    """The replay uplink cannot start; one line for the operator."""


def listen_address(text: str, config: VehicleConfig) -> str:
    """`--uplink`'s value as HOST:PORT: empty is the vehicle's uplink host on port 8810,
    a bare port that port on that host. `ReplayUplinkError` when it is neither."""
    host = config.uplink.listen.rpartition(":")[0] or "127.0.0.1"
    value = text.strip()
    if not value:
        value = f"{host}:{DEFAULT_PORT}"
    elif value.isdigit():
        value = f"{host}:{value}"
    try:
        return check_host_port(value, allow_zero_port=True)
    except ValueError as e:
        raise ReplayUplinkError(f"--uplink {text!r}: {e}") from None


def _q(value: str) -> str:
    return json.dumps(value)  # a TOML basic string is a JSON string


def config_text(config: VehicleConfig, streams: dict[str, set[str]], listen: str,
                token_file: Path) -> str:
    """The uplink's config: the recorded cameras (`streams`: camera → recorded profiles)."""
    named = {c.id: c for c in config.cameras}
    u = config.uplink
    lines = [f"vehicle = {_q(config.vehicle)}", "",
             "[uplink]", f"listen = {_q(listen)}", f"token = {{ file = {_q(str(token_file))} }}",
             f"max_sessions = {u.max_sessions}", f"max_transcodes = {u.max_transcodes}",
             f"worst_rtt_ms = {u.worst_rtt_ms}", f"profile = {_q(u.profile)}",
             f"redundancy = {_q(u.redundancy)}"]
    for camera in sorted(streams):
        c = named.get(camera)
        lines += ["", "[[cameras]]", f"id = {_q(camera)}",
                  f"name = {_q(c.name if c else camera)}"]
        if c is not None and c.drone is not None:
            lines.append(f"drone = {_q(c.drone)}")
        else:
            # Never opened: the uplink reads the replay's media plane, not the camera.
            lines.append(f"main = {_q(f'rtsp://127.0.0.1:9/replay/{camera}/main')}")
        if "sub" in streams[camera]:
            lines.append(f"sub = {_q(f'rtsp://127.0.0.1:9/replay/{camera}/sub')}")
        if c is not None:
            lines.append(f"uplink_profile = {_q(c.uplink_profile)}")
            if c.position is not None:
                alt = f", alt_m = {c.position.alt_m}" if c.position.alt_m is not None else ""
                lines.append(f"position = {{ lat = {c.position.lat}, lon = {c.position.lon}"
                             f"{alt} }}")
    return "\n".join(lines) + "\n"


class ReplayUplink:
    """`edge run uplink` on the replay's runtime dir; `await start()`, `await stop()`."""

    def __init__(self, runtime_dir: Path, config: VehicleConfig,
                 streams: dict[str, set[str]], listen: str) -> None:
        self.runtime_dir = runtime_dir
        self.config = config
        self.streams = streams
        self.listen = listen
        self.token_file = runtime_dir / TOKEN_FILE
        self.config_file = runtime_dir / CONFIG_FILE
        self.log_file = runtime_dir / LOG_FILE
        self.url = ""
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def token(self) -> str:
        return self.token_file.read_text().strip()

    async def start(self) -> str:
        """Start the uplink and wait until it serves; its URL."""
        fd = os.open(self.token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(32) + "\n")
        self.config_file.write_text(config_text(self.config, self.streams, self.listen,
                                                self.token_file))
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        env[RUNTIME_DIR_ENV] = str(self.runtime_dir)
        env.pop("NOTIFY_SOCKET", None)  # our child is not systemd's
        # A local file opened once: no reason to hop to a thread.
        log = open(self.log_file, "ab")  # noqa: ASYNC230, SIM115
        try:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "edge", "run", "uplink", "--config",
                str(self.config_file), stdin=asyncio.subprocess.DEVNULL, stdout=log,
                stderr=log, env=env)
        finally:
            log.close()
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            text = self.log_file.read_text(errors="replace")
            if m := _SERVING.search(text):
                self.url = m.group(1)
                return self.url
            if self.proc.returncode is not None or time.monotonic() > deadline:
                await self.stop()
                last = next((line for line in reversed(text.splitlines()) if line.strip()),
                            "no output")
                raise ReplayUplinkError(f"the replay uplink on {self.listen} did not start "
                                        f"({last.strip()}; log: {self.log_file})")
            # Polling a local log for a few seconds; the child says nothing else.
            await asyncio.sleep(0.1)

    async def stop(self) -> None:
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), STOP_TIMEOUT_S)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
