"""End to end: `edge demo` draws the dashboard in a real terminal (tmux) and `q` ends it all."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from edge.config import VehicleConfig, load_config
from edge.services import SERVICES

REPO = Path(__file__).resolve().parents[2]
DEMO_CONFIG = REPO / "config" / "demo.toml"
EDGE = REPO / ".venv" / "bin" / "edge"

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed"),
]


class Tmux:
    """One private tmux server (its own socket), so nothing else's sessions are touched."""

    def __init__(self) -> None:
        self.socket = f"edge-ui-test-{os.getpid()}"
        self.socket_path: str | None = None

    def __call__(self, *args: str) -> str:
        return subprocess.run(["tmux", "-L", self.socket, *args], check=True,
                              capture_output=True, text=True, timeout=10).stdout

    def screen(self) -> str:
        return self("capture-pane", "-p", "-J", "-t", "demo")

    def kill(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True,
                       timeout=10)
        if self.socket_path:  # tmux leaves its socket file behind
            Path(self.socket_path).unlink(missing_ok=True)


@pytest.fixture
def tmux() -> Iterator[Tmux]:
    t = Tmux()
    yield t
    t.kill()


def wait_for(what: str, check: Callable[[], bool], timeout: float, screen: Callable[[], str]
             ) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; the terminal shows:\n"
                                 f"{screen()}")
        time.sleep(0.25)


def descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rpartition(")")[2].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    out: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in out:
                out.add(child)
                todo.append(child)
    return out


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


def expected_drone_ids(config: VehicleConfig) -> list[str]:
    """`<link>-<sysid>` for each simulated drone on a configured link."""
    links = {d.connection: d.id for d in config.drones}
    return [f"{links[s.connection]}-{s.sysid}" for s in config.demo.sim_drones
            if s.connection in links]


def test_demo_draws_the_dashboard_and_q_ends_everything(tmux: Tmux) -> None:
    config = load_config(DEMO_CONFIG)
    cameras = [c.name for c in config.cameras]
    drones = expected_drone_ids(config)
    assert cameras, "config/demo.toml names no cameras"
    # The pane stays after the demo exits so that its last lines can be read. Under
    # pytest the tmux server hands its panes COLUMNS=80 and LINES=24, which would
    # override the window's real size: they are unset.
    tmux("new-session", "-d", "-s", "demo", "-x", "160", "-y", "50", "-c", str(REPO),
         f"env -u COLUMNS -u LINES TERM=xterm-256color {EDGE} demo --config {DEMO_CONFIG}; "
         "echo EDGE-DEMO-EXIT=$?; sleep 60")
    shell = int(tmux("display-message", "-p", "-t", "demo", "#{pane_pid}").strip())
    tmux.socket_path = tmux("display-message", "-p", "#{socket_path}").strip()
    wait_for("every camera's tile", lambda: all(n in tmux.screen() for n in cameras), 30,
             tmux.screen)
    screen = tmux.screen()
    assert "Drones" in screen and "Links" in screen and "Alerts and events" in screen
    if "drone" in SERVICES:
        wait_for(f"drones {drones}", lambda: all(d in tmux.screen() for d in drones), 45,
                 tmux.screen)
    else:
        pytest.skip("no drone service in edge/services SERVICES: cameras checked, drones not")
    processes = descendants(shell)
    assert len(processes) > 2, f"the demo runs no children? {processes}"
    tmux("send-keys", "-t", "demo", "q")
    wait_for("the demo to exit", lambda: "EDGE-DEMO-EXIT=" in tmux.screen(), 40, tmux.screen)
    screen = tmux.screen()
    assert "EDGE-DEMO-EXIT=0" in screen, screen
    summary = next(json.loads(line) for line in screen.splitlines() if line.startswith("{"))
    assert summary["services"], summary
    left = [p for p in processes if alive(p) and p in descendants(shell)
            and "sleep" not in Path(f"/proc/{p}/cmdline").read_bytes().decode(errors="replace")]
    assert not left, f"processes left behind: {left}"
