"""The supervisor's policies with real child processes: restart backoff and stop order.

The children are tiny Python scripts in place of `edge run ...` (the
supervisor runs any argv), so they can say when they started, exited or saw
SIGTERM. The policy constants are patched small; the architecture's are
0.5 s doubling to 10 s, reset after 30 s, SIGKILL after 5 s.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from pathlib import Path

import pytest

from edge.config import parse_config
from edge.runtime import supervisor as supervisor_mod
from edge.runtime.supervisor import Child, Supervisor

pytestmark = pytest.mark.timeout(60)

# Exits with code 1 at once, except its `long_run`-th start, which runs for `long_s`.
FLAKY = """
import sys, time
log, long_run, long_s = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
with open(log, "a") as f:
    f.write("start\\n")
with open(log) as f:
    n = f.read().count("start")
if n == long_run:
    time.sleep(long_s)
with open(log, "a") as f:
    f.write(f"exit {time.monotonic()}\\n")
sys.exit(1)
"""

# Notes SIGTERM (and, unless stubborn, exits on it); `touch` is created once listening.
OBEDIENT = """
import signal, sys, time
log, name, stubborn, touch = sys.argv[1], sys.argv[2], sys.argv[3] == "1", sys.argv[4]
def note(what):
    with open(log, "a") as f:
        f.write(f"{what} {name} {time.monotonic()}\\n")
def on_term(signum, frame):
    note("term")
    if not stubborn:
        note("exit")
        sys.exit(0)
signal.signal(signal.SIGTERM, on_term)
if touch:
    open(touch, "a").close()
note("ready")
while True:
    time.sleep(1)
"""


class Recording(Supervisor):
    """The real supervisor; it also notes when it spawns each child (our monotonic clock)."""

    spawned: list[float]

    async def _spawn(self, child: Child) -> asyncio.subprocess.Process:
        self.spawned.append(time.monotonic())
        return await super()._spawn(child)


def supervisor(tmp_path: Path, runtime_dir: Path) -> Recording:
    config = parse_config({"vehicle": "t", "uplink": {"enabled": False}})
    sup = Recording(config, tmp_path / "vehicle.toml", runtime_dir)
    sup.spawned = []
    return sup


def script(code: str, *args: object) -> list[str]:
    return [sys.executable, "-c", code, *map(str, args)]


async def until(predicate: object, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not (callable(predicate) and predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.05)


async def test_restart_backoff_doubles_caps_and_resets(
        tmp_path: Path, runtime_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first, cap, healthy = 0.2, 1.6, 1.0
    monkeypatch.setattr(supervisor_mod, "BACKOFF_FIRST_S", first)
    monkeypatch.setattr(supervisor_mod, "BACKOFF_MAX_S", cap)
    monkeypatch.setattr(supervisor_mod, "HEALTHY_RUN_S", healthy)
    log = tmp_path / "flaky.log"
    sup = supervisor(tmp_path, runtime_dir)
    # Five quick crashes, then a run longer than `healthy`, then quick crashes again.
    child = Child("flaky", script(FLAKY, log, 6, healthy + 1.0), "service")
    sup.children = [child]
    await sup.start()
    try:
        await until(lambda: len(sup.spawned) >= 8, "the eighth start")
    finally:
        await sup.stop()
    exits = [float(line.split()[1]) for line in log.read_text().splitlines()
             if line.startswith("exit")]
    # The wait between a child's exit and its next start.
    gaps = [sup.spawned[k + 1] - exits[k] for k in range(7)]
    shown = ", ".join(f"{g:.2f}" for g in gaps)
    # Lower bounds are the policy itself: never sooner than the backoff.
    for k, least in enumerate([first, 2 * first, 4 * first, 8 * first, cap, first, 2 * first]):
        assert gaps[k] >= least, f"restart {k + 2} came {gaps[k]:.2f} s after the exit " \
                                 f"(backoff {least} s); waits: {shown}"
    # Upper bounds only tell the alternatives apart, with a second or more to spare for
    # a loaded machine: uncapped the fifth wait is 3.2 s; unreset the sixth is 1.6 s.
    assert gaps[4] < 2 * cap, f"backoff not capped at {cap} s; waits: {shown}"
    assert gaps[5] < cap, f"backoff not reset after a run over {healthy} s; waits: {shown}"


async def test_stop_order_services_simulators_broker_and_sigkill(
        tmp_path: Path, runtime_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    grace = 1.0
    monkeypatch.setattr(supervisor_mod, "STOP_GRACE_S", grace)
    log = tmp_path / "signals.log"
    sup = supervisor(tmp_path, runtime_dir)
    # The broker's stand-in creates the socket the supervisor waits for before going on.
    bus_socket = sup.endpoints.sub.removeprefix("ipc://")

    def child(name: str, kind: str, stubborn: bool = False, touch: str = "") -> Child:
        return Child(name, script(OBEDIENT, log, name, int(stubborn), touch), kind)

    sup.children = [child("bus", "service", touch=bus_socket),
                    child("sim-cameras", "simulator"),
                    child("camera@gate", "service"),
                    child("stubborn", "service", stubborn=True),
                    child("uplink", "service")]
    names = [c.name for c in sup.children]

    def notes(what: str) -> dict[str, float]:
        text = log.read_text() if log.exists() else ""
        return {parts[1]: float(parts[2]) for parts in map(str.split, text.splitlines())
                if parts[0] == what}

    await sup.start()
    try:
        try:
            await until(lambda: set(notes("ready")) == set(names), "every child listening")
        finally:
            await sup.stop()
        check_stop(sup, notes("term"), notes("exit"), grace)
    finally:
        # The stubborn child ignores the SIGTERM that PR_SET_PDEATHSIG would send it:
        # if the supervisor failed to kill it, this test must not leave it behind.
        for c in sup.children:
            if c.proc is not None and c.proc.returncode is None:
                c.proc.kill()
                await c.proc.wait()


def check_stop(sup: Supervisor, term: dict[str, float], exited: dict[str, float],
               grace: float) -> None:
    names = [c.name for c in sup.children]
    order = " < ".join(sorted(term, key=term.__getitem__))
    assert set(term) == set(names), f"SIGTERM seen by {sorted(term)} only"
    services = ["camera@gate", "stubborn", "uplink"]
    # Each group is told only once the one before it has gone.
    assert max(term[s] for s in services) < term["sim-cameras"], order
    assert exited["sim-cameras"] < term["bus"], order
    # The simulators waited until the stubborn service's grace ran out (less a moment:
    # the stubborn child notes its SIGTERM a little after it was sent)...
    assert term["sim-cameras"] - term["stubborn"] >= grace - 0.2, order
    by_name = {c.name: c for c in sup.children}
    # ...and then it was killed, while every other child ended on its SIGTERM.
    stubborn = by_name["stubborn"].proc
    assert stubborn is not None and stubborn.returncode == -signal.SIGKILL
    assert "stubborn" not in exited
    for name in set(names) - {"stubborn"}:
        proc = by_name[name].proc
        assert proc is not None and proc.returncode == 0, f"{name}: {proc and proc.returncode}"
    # A stop is not a crash: nothing was restarted.
    assert [c.starts for c in sup.children] == [1] * len(names)
