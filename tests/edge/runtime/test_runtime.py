"""Services under a real (fake-systemd) notify socket, signals, health and logs."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from edge.bus import topics
from edge.bus.client import BusClient
from edge.bus.endpoints import Endpoints
from edge.bus.messages import ServiceHealth
from edge.cli import build_parser
from edge.runtime.logs import JsonFormatter
from edge.runtime.sdnotify import Notifier
from tests.support import REPO

pytestmark = pytest.mark.timeout(60)
DEMO = REPO / "config" / "demo.toml"


def notify_socket(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(10)
    return sock


def read_until(sock: socket.socket, key: str) -> list[str]:
    seen: list[str] = []
    while not any(line.startswith(key) for line in seen):
        seen += sock.recv(4096).decode().splitlines()
    return seen


def test_notifier_speaks_datagrams(runtime_dir: Path) -> None:
    path = runtime_dir / "notify"
    with notify_socket(path) as sock:
        n = Notifier(str(path))
        assert n.ready("serving")
        assert sock.recv(100).decode().splitlines() == ["READY=1", "STATUS=serving"]
        n.close()
    assert not Notifier("").notify(READY=1)  # outside systemd: nothing, no error


def test_abstract_namespace_address() -> None:
    name = f"edge-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        Notifier("@" + name).watchdog()
        assert sock.recv(100) == b"WATCHDOG=1"


def test_run_bus_under_systemd_protocol(runtime_dir: Path) -> None:
    """`edge run bus` as systemd runs it: READY, STATUS, WATCHDOG, then SIGTERM stops it."""
    path = runtime_dir / "notify"
    env = dict(os.environ, NOTIFY_SOCKET=str(path), WATCHDOG_USEC="1000000",
               EDGE_RUNTIME_DIR=str(runtime_dir))
    with notify_socket(path) as sock:
        proc = subprocess.Popen([sys.executable, "-m", "edge", "run", "bus", "--config", str(DEMO)],
                                env=env, stderr=subprocess.PIPE, text=True)
        try:
            env.pop("WATCHDOG_USEC")
            seen = read_until(sock, "READY=1")
            assert any(s.startswith("STATUS=forwarding") for s in seen)
            read_until(sock, "WATCHDOG=1")
            endpoints = Endpoints(pub=f"ipc://{runtime_dir}/bus-pub.sock",
                                  sub=f"ipc://{runtime_dir}/bus-sub.sock",
                                  router=f"ipc://{runtime_dir}/bus-router.sock",
                                  runtime_dir=runtime_dir)
            health = asyncio.run(_first_health(endpoints, "bus"))
            assert health.service == "bus" and health.pid == proc.pid
            proc.send_signal(signal.SIGTERM)
            read_until(sock, "STOPPING=1")
            # Stops by itself, exit 0; the timeout only catches a hang (systemd would SIGKILL).
            assert proc.wait(timeout=30) == 0
        finally:
            proc.kill()
            _, err = proc.communicate(timeout=5)
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert any(line["msg"].startswith("ready") for line in lines), err


async def _first_health(endpoints: Endpoints, name: str) -> ServiceHealth:
    client = BusClient(endpoints, source="test")
    try:
        sub = client.subscribe(topics.svc_health(name))
        async with asyncio.timeout(5):
            while True:
                env = await sub.recv()
                if isinstance(env.message, ServiceHealth):
                    return env.message
    finally:
        await client.close()


def test_run_unknown_service_is_one_line() -> None:
    r = subprocess.run([sys.executable, "-m", "edge", "run", "nonsense", "--config", str(DEMO)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    assert r.stderr.startswith('edge: no service "nonsense"') and "Traceback" not in r.stderr


def test_json_logs_are_one_object_a_line() -> None:
    rec = logging.makeLogRecord({"msg": "camera %s down", "args": ("north",), "levelname": "ERROR",
                                 "levelno": 40, "name": "camera", "device": "north"})
    line = JsonFormatter("camera@north", journald=True).format(rec)
    assert line.startswith("<3>{")
    obj = json.loads(line[3:])
    assert obj["msg"] == "camera north down" and obj["device"] == "north"
    assert obj["service"] == "camera@north" and obj["level"] == "error"


def test_every_command_has_help() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    commands = set(sub.choices)
    assert {"run", "demo", "config", "bus", "bench"} <= commands
    out = subprocess.run([sys.executable, "-m", "edge", "--help"], capture_output=True,
                         text=True, timeout=30).stdout
    for command in sorted(commands):
        assert re.search(rf"^    {command}\b", out, re.M), command
        r = subprocess.run([sys.executable, "-m", "edge", command, "--help"],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0 and "usage: edge" in r.stdout, command
