"""How much CPU the dashboard uses, in a real terminal, under a vehicle's load.

    .venv/bin/python -m tests.ui.cpu_bench --cameras 8 --drones 2 --seconds 30
    .venv/bin/python -m tests.ui.cpu_bench --demo CONFIG --seconds 30
    .venv/bin/python -m tests.ui.cpu_bench --demo-cameras 8 --seconds 60 --warmup 20

The first starts a broker (`edge run bus`), the fake vehicle of
:mod:`tests.ui.feed` (services' rates) and `edge dashboard` in a private tmux
server, then reads the dashboard's CPU time from /proc before and after. The
second runs `edge demo CONFIG` instead (real simulators and services) and
measures the demo process, which hosts the dashboard and the supervisor (the
supervisor alone, `--headless`, used 0.6% of a core with 8 cameras). The third
is the second on config/demo.toml with simulated cameras added up to N.
Not a test: the machine's other load moves the figure.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
EDGE = REPO / ".venv" / "bin" / "edge"
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def child_matching(parent: int, text: str, timeout: float = 10) -> int:
    """`parent` itself if it runs `text` (the shell exec'd it), else its child that does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in Path(f"/proc/{parent}/cmdline").read_bytes().replace(b"\0", b" ").decode():
            return parent
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if int(stat.rpartition(")")[2].split()[1]) == parent and text in cmd:
                return int(entry.name)
        time.sleep(0.2)
    raise RuntimeError(f"no child of {parent} running {text!r}")


def demo_with_cameras(n: int, out_dir: Path) -> Path:
    """config/demo.toml with simulated cameras added until it has `n`."""
    from edge.config import load_config

    source = REPO / "config" / "demo.toml"
    have = len(load_config(source).cameras)
    text = source.read_text()
    cams, sims = "", ""
    for i in range(have, n):
        cam, port = f"extra-{i}", 8600 + i
        cams += (f'\n[[cameras]]\nid = "{cam}"\nname = "Extra {i}"\n'
                 f'main = "rtsp://127.0.0.1:{port}/{cam}/main"\n'
                 f'sub = "rtsp://127.0.0.1:{port}/{cam}/sub"\n')
        sims += f'  {{ name = "{cam}", port = {port} }},\n'
    if "\n[[drones]]" not in text or "sim_cameras = [\n" not in text:
        raise SystemExit("config/demo.toml changed shape: write the config by hand")
    text = text.replace("\n[[drones]]", cams + "\n[[drones]]", 1)
    text = text.replace("sim_cameras = [\n", "sim_cameras = [\n" + sims, 1)
    out = out_dir / "demo.toml"
    out.write_text(text)
    for secret in REPO.joinpath("config").glob("*.token"):
        shutil.copy(secret, out_dir)
    assert len(load_config(out).cameras) == max(n, have)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--cameras", type=int, default=8)
    p.add_argument("--drones", type=int, default=2)
    p.add_argument("--demo", metavar="CONFIG", help="measure `edge demo CONFIG` instead")
    p.add_argument("--demo-cameras", type=int, metavar="N",
                   help="measure `edge demo` on config/demo.toml grown to N cameras")
    p.add_argument("--seconds", type=float, default=30)
    p.add_argument("--warmup", type=float, default=8)
    p.add_argument("--size", default="120x40")
    p.add_argument("--truecolor", action="store_true",
                   help="say the terminal has 24-bit colour (COLORTERM=truecolor); without it "
                        "Textual converts every colour to the 256-colour palette")
    args = p.parse_args()
    term = "TERM=xterm-256color" + (" COLORTERM=truecolor" if args.truecolor else "")
    width, height = args.size.split("x")
    sock = f"edge-cpu-bench-{os.getpid()}"
    tmux = ["tmux", "-L", sock]
    runtime = Path(tempfile.mkdtemp(prefix="edge-cpu-"))
    env = dict(os.environ, EDGE_RUNTIME_DIR=str(runtime))
    helpers: list[subprocess.Popen[bytes]] = []
    socket_path = ""
    config = REPO / "config" / "demo.toml"
    if args.demo_cameras:
        args.demo = str(demo_with_cameras(args.demo_cameras, runtime))
    try:
        if args.demo:
            command = f"env -u COLUMNS -u LINES {term} {EDGE} demo --config {args.demo}"
            what = "edge demo"
        else:
            helpers.append(subprocess.Popen([str(EDGE), "run", "bus", "--config", str(config),
                                             "--bus", str(runtime)], env=env,
                                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            time.sleep(1.5)
            helpers.append(subprocess.Popen(
                [sys.executable, "-m", "tests.ui.feed", "--bus", str(runtime), "--no-heartbeat",
                 "--cameras", str(args.cameras), "--drones", str(args.drones)],
                cwd=REPO, env=env))
            command = (f"env -u COLUMNS -u LINES {term} {EDGE} dashboard --config {config} "
                       f"--bus {runtime}")
            what = "edge dashboard"
        subprocess.run([*tmux, "new-session", "-d", "-s", "bench", "-x", width, "-y", height,
                        "-c", str(REPO), command], check=True, env=env)
        shell, socket_path = subprocess.run(
            [*tmux, "display-message", "-p", "-t", "bench", "#{pane_pid} #{socket_path}"],
            capture_output=True, text=True, check=True).stdout.split()
        pid = child_matching(int(shell), what)
        time.sleep(args.warmup)
        c0, t0 = cpu_seconds(pid), time.monotonic()
        time.sleep(args.seconds)
        c1, t1 = cpu_seconds(pid), time.monotonic()
        screen = subprocess.run([*tmux, "capture-pane", "-p", "-t", "bench"],
                                capture_output=True, text=True).stdout
        print(screen)
        load = os.getloadavg()
        colours = "truecolor" if args.truecolor else "256 colours"
        print(f"{what} (pid {pid}), {args.size}, {colours}: {c1 - c0:.2f} s CPU in "
              f"{t1 - t0:.1f} s = "
              f"{100 * (c1 - c0) / (t1 - t0):.1f}% of one core "
              f"(load average {load[0]:.2f} on {os.cpu_count()} cores)")
        subprocess.run([*tmux, "send-keys", "-t", "bench", "q"], check=True)
        time.sleep(8 if args.demo else 2)
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True)
        if socket_path:  # tmux leaves its socket file behind
            Path(socket_path).unlink(missing_ok=True)
        for h in helpers:
            h.terminate()
        for h in helpers:
            h.wait(10)
        shutil.rmtree(runtime, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
