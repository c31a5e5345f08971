"""End to end: `edge demo` draws live data in a real terminal (tmux), commands a simulated
drone through the real drone service, and `q` ends it all with nothing left behind."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from edge.config import VehicleConfig, load_config
from edge.runtime.supervisor import plan
from tests.support import demo_config_copy, demo_processes, processes_with_env, require

REPO = Path(__file__).resolve().parents[2]
EDGE = REPO / ".venv" / "bin" / "edge"
# ArduCopter's hold is BRAKE (drivers/mavlink/commands.py hold_mode); the simulated
# drones are ArduCopter quadrotors that start in GUIDED, circling.
COPTER_HOLD_MODE = "BRAKE"

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(autouse=True)
def _tmux_installed() -> None:
    require(shutil.which("tmux"), "tmux is not installed (.ci/run installs it)")


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

    def history(self) -> str:
        """The whole pane, scrollback included (the demo's last lines may have scrolled)."""
        return self("capture-pane", "-p", "-J", "-S", "-", "-t", "demo")

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


def wait_for(what: str, check: Callable[[], object], timeout: float, screen: Callable[[], str]
             ) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}; the "
                                 f"terminal shows:\n{screen()}")
        time.sleep(0.25)


def expected_drone_ids(config: VehicleConfig) -> list[str]:
    """`<link>-<sysid>` for each simulated drone on a configured link, in the drone pane's
    order (configured links in config order)."""
    order = {d.connection: i for i, d in enumerate(config.drones)}
    links = {d.connection: d.id for d in config.drones}
    sims = sorted((s for s in config.demo.sim_drones if s.connection in links),
                  key=lambda s: (order[s.connection], s.sysid))
    return [f"{links[s.connection]}-{s.sysid}" for s in sims]


# A tile's stats row as only a status from a camera receiving frames draws it: frames per
# second, bit rate and the age of the last frame (under 10 s, or it would not be live).
LIVE_STATS = re.compile(r"^(\d+(?:\.\d)?)fps (\d+(?:\.\d)?)[kM] (\d)s$")


def tile(screen: str, name: str) -> tuple[str, str] | None:
    """(state row, stats row) of the camera tile headed `● name`, or None if not drawn."""
    lines = screen.splitlines()
    for i, line in enumerate(lines[:-2]):
        col = line.find(f"● {name}")
        if col >= 0:
            # Tiles sit side by side: a tile's text ends where two spaces begin.
            state, stats = (re.split(r"\s{2,}", row[col:].strip())[0]
                            for row in lines[i + 1:i + 3])
            return state, stats
    return None


def tile_live(screen: str, name: str) -> bool:
    shown = tile(screen, name)
    if shown is None or shown[0] != "LIVE":
        return False
    m = LIVE_STATS.match(shown[1])
    return m is not None and float(m.group(1)) > 0 and float(m.group(2)) > 0


def drone_row(screen: str, drone_id: str) -> dict[str, str] | None:
    """The drone pane's row for `drone_id`: mode, alt, speed, battery as shown."""
    row = re.compile(rf"(?:^|\s){re.escape(drone_id)}\s+(\S+)\s+(?:ARM|dis|—)\s+(\S+)\s+(\S+)"
                     r"\s+(\S+)")
    for line in screen.splitlines():
        if m := row.search(line):
            return dict(zip(("mode", "alt", "speed", "battery"), m.groups(), strict=True))
    return None


def has_telemetry(screen: str, drone_id: str) -> bool:
    r = drone_row(screen, drone_id)
    # An em dash is what the pane shows with no telemetry (a placeholder or a status only).
    return r is not None and all(re.match(r"-?\d", r[k]) for k in ("alt", "speed", "battery"))


def test_demo_shows_live_data_commands_a_drone_and_q_ends_everything(
        tmux: Tmux, tmp_path: Path, runtime_dir: Path) -> None:
    # config/demo.toml with private ports, so that it runs beside anyone else's demo.
    config_path = demo_config_copy(tmp_path / "config", emulate_links=True)  # as `make demo`
    config = load_config(config_path)
    assert config.cameras and expected_drone_ids(config), \
        "config/demo.toml names no cameras or no simulated drones"
    # The demo makes its private runtime dir with mkdtemp: under this TMPDIR (short, for
    # the ipc socket paths) it is the one edge-demo-* directory.
    # The pane stays after the demo exits so that its last lines can be read. Under
    # pytest the tmux server hands its panes COLUMNS=80 and LINES=24, which would
    # override the window's real size: they are unset.
    tmux("new-session", "-d", "-s", "demo", "-x", "160", "-y", "50", "-c", str(REPO),
         f"env -u COLUMNS -u LINES TMPDIR={runtime_dir} TERM=xterm-256color "
         f"{EDGE} demo --config {config_path}; echo EDGE-DEMO-EXIT=$?; sleep 60")
    tmux.socket_path = tmux("display-message", "-p", "#{socket_path}").strip()

    def demo_dirs() -> list[Path]:
        return list(runtime_dir.glob("edge-demo-*"))

    wait_for("the demo's runtime dir", demo_dirs, 20, tmux.screen)
    demo_dir = demo_dirs()[0]
    try:
        check_demo(tmux, config_path, demo_dir)
    finally:
        # Whatever happened, nothing of this demo outlives the test: the demo and each of
        # its children carry this TMPDIR (the supervisor too, so it restarts nothing).
        tmux.kill()
        for _ in range(10):
            pids = processes_with_env("TMPDIR", str(runtime_dir))
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.2)


def check_demo(tmux: Tmux, config_path: Path, demo_dir: Path) -> None:
    config = load_config(config_path)
    cameras = [c.name for c in config.cameras]
    drones = expected_drone_ids(config)

    # Names are drawn from the config before any data: only a camera service that receives
    # frames makes its tile LIVE with a frame rate, a bit rate and a recent frame. 60 s:
    # a cold start of 16 processes on a shared 2-core machine, with time to spare.
    wait_for("every camera tile LIVE with fps, bit rate and frame age",
             lambda: all(tile_live(tmux.screen(), n) for n in cameras), 60, tmux.screen)
    screen = tmux.screen()
    assert "Drones" in screen and "Links" in screen and "Alerts and events" in screen
    wait_for(f"telemetry from drones {drones}",
             lambda: all(has_telemetry(tmux.screen(), d) for d in drones), 45, tmux.screen)

    # Every child carries the demo's runtime dir in its environment: that is how leftovers
    # are found at the end, so first check it finds the running demo.
    children = demo_processes(demo_dir)
    assert len(children) >= len(plan(config, config_path)), children

    # One real command: dashboard key, confirmation dialog, bus request, the real drone
    # service, MAVLink to the simulator; its answer and the new mode come back the same way.
    target = drones[0]  # the drone pane's cursor starts on its first row
    before = drone_row(tmux.screen(), target)
    assert before is not None and before["mode"] != COPTER_HOLD_MODE, before
    asked = f"Hold position: drone {target}?"
    # A refusal is a toast that fades in seconds: looked for while waiting, so that it
    # fails the test with its words rather than as a dialog that never came.
    refusals = ("nothing to command", "cannot command it")
    seen: list[str] = []

    def dialog_or_refusal() -> bool:
        screen = tmux.screen()
        seen.extend(line.strip() for line in screen.splitlines()
                    if any(r in line for r in refusals))
        return asked in screen or bool(seen)

    # Functional bounds: the demo's 20-odd processes and another test on a 2-core
    # machine can hold a key press up for seconds.
    for attempt in range(2):
        tmux("send-keys", "-t", "demo", "2")  # the drone pane
        tmux("send-keys", "-t", "demo", "h")
        try:
            wait_for("the confirmation dialog", dialog_or_refusal, 15 if attempt == 0 else 30,
                     tmux.screen)
            break
        except AssertionError:
            # Twice in CI (2 runs of 5) the first press opened nothing, with the drone pane
            # focused and no toast seen; pressed again, so that a key lost on its way
            # through tmux does not fail the demo. The second press must work.
            if attempt:
                raise
    assert not seen, f"the dashboard refused the command: {seen}"
    tmux("send-keys", "-t", "demo", "y")
    # The event log keeps the reply (a notification fades); 15 s: the bus request's own
    # timeout is 3 s, so by then any reply or timeout is on the screen.
    wait_for(f"{target}'s hold to be answered",
             lambda: re.search(rf"{re.escape(target)}\s+hold position (accepted|rejected|"
                               r"timeout|busy|error)", tmux.screen()), 15, tmux.screen)
    screen = tmux.screen()
    assert re.search(rf"{re.escape(target)}\s+hold position accepted", screen), screen
    wait_for(f"{target}'s mode to become {COPTER_HOLD_MODE}",
             lambda: (drone_row(tmux.screen(), target) or {}).get("mode") == COPTER_HOLD_MODE,
             30, tmux.screen)

    tmux("send-keys", "-t", "demo", "q")
    wait_for("the demo to exit", lambda: "EDGE-DEMO-EXIT=" in tmux.screen(), 40, tmux.screen)
    output = tmux.history()
    assert "EDGE-DEMO-EXIT=0" in output, output
    summary = next(json.loads(line) for line in output.splitlines() if line.startswith("{"))
    assert summary["runtime_dir"] == str(demo_dir), summary
    services = summary["services"]
    expected = {c.name for c in plan(config, config_path)}
    if summary["links"]["emulated"]:  # as root: the demo's own `edge centre` too
        expected.add("centre")
    assert set(services) == expected, services
    assert all(s["started"] for s in services.values()), services
    restarted = {name: s["restarts"] for name, s in services.items() if s["restarts"]}
    assert not restarted, f"children restarted during a quiet demo: {restarted}"
    # The supervisor stops every child before it prints the summary; a couple of seconds
    # more lets a process that was already dying finish. Anything still alive then, orphan
    # or not, is a leftover.
    left: dict[int, str] = {}
    deadline = time.monotonic() + 3
    while (left := demo_processes(demo_dir)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not left, f"processes left behind: {left}"
