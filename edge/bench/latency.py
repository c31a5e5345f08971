"""`edge bench latency`: glass-to-glass latency and uplink cost, camera to WHEP viewers.

One command runs the whole path on this machine, each part as production runs it:

- a simulated dome camera encoding live (`edge sim camera --live`): every
  picture carries the wall-clock time it was rendered, as machine-readable
  blocks (:mod:`drivers.sim.camera.timestamp_blocks`);
- the broker (in this process), `edge run camera@bench` and `edge run uplink`
  (their own processes, so the uplink's CPU is its own);
- N aiortc WHEP viewers (:mod:`edge.bench.whep_viewer`, in this process), each
  decoding every frame and reading the time back from the picture.

Glass-to-glass latency is "now" minus the time in the picture, when the
viewer has decoded it: render, x264 (ultrafast, zerolatency), RTSP, ingest,
media plane, uplink, RTP/SRTP over loopback, the viewer's jitter buffer and
decoder. Only pictures rendered after the viewer's POST count (the cached GOP
a viewer starts from is history by design). aiortc's receiver hands a frame
to its decoder only when the next frame's first packet arrives, so every
figure includes one frame interval (33 ms at 30 fps) that a browser does not
add.

Phases: the uplink idle (no viewer), with one viewer, then with N. CPU is the
uplink process's user+system time over each phase, in % of one core; "per
additional viewer" is (N viewers - 1 viewer) / (N - 1), the cost the issue
bounds. Frames lost are gaps in the rendered times a viewer received.

``--link PROFILE`` runs the same path across the link emulator instead, the
vehicle's processes and the viewers in its two namespaces
(:mod:`edge.bench.latency_link`); ``--stream`` picks what the viewers ask for.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import av
import numpy as np

from drivers.sim.camera.timestamp_blocks import MODULUS, decode_timestamp_blocks
from drivers.sim.link.profile import PROFILES
from edge.bench.whep_viewer import WhepViewer
from edge.bus.broker import Broker
from edge.bus.endpoints import Endpoints

TOKEN = "bench-token-" + "x" * 20
CAMERA = "bench"
FPS = 30
STARTUP_TIMEOUT_S = 60.0
STREAMS = {
    "main": "1280x720 30 fps H.264 constrained baseline, live x264 ultrafast, 2 Mbit/s",
    "sub": "640x360 30 fps H.264 constrained baseline, live x264 ultrafast, 512 kbit/s",
    "auto": "main (1280x720, 2 Mbit/s) or sub (640x360, 512 kbit/s), as the uplink chooses",
}


@dataclass
class Viewer:
    client: WhepViewer
    post_wall_ms: int
    latencies: list[tuple[int, float]] = field(default_factory=list)  # (phase, ms)
    stamps: list[tuple[int, int]] = field(default_factory=list)  # (phase, rendered ms)
    catchup: int = 0
    unreadable: int = 0
    phase: int = 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rendered_ms(frame: av.VideoFrame) -> int | None:
    # The luma plane is the grey picture; no colour conversion needed.
    plane = frame.planes[0]
    grey = np.frombuffer(memoryview(plane), np.uint8).reshape(frame.height, plane.line_size)
    return decode_timestamp_blocks(grey[:, :frame.width])


def _on_frame(viewer: Viewer, frame: av.VideoFrame) -> None:
    now_ms = time.time_ns() // 1_000_000
    stamp = _rendered_ms(frame)
    if stamp is None:
        viewer.unreadable += 1
        return
    stamp_full = now_ms - ((now_ms - stamp) % MODULUS)
    if stamp_full < viewer.post_wall_ms:
        viewer.catchup += 1
        return
    viewer.latencies.append((viewer.phase, float(now_ms - stamp_full)))
    viewer.stamps.append((viewer.phase, stamp_full))


def _gaps(stamps: list[int]) -> int:
    # Missing rendered times: the camera's own hiccups (a late render on a busy
    # machine) count too, so this is only shown beside the real loss count.
    interval = 1000 / FPS
    lost = 0
    for a, b in zip(stamps, stamps[1:], strict=False):
        gap = b - a
        if gap > 1.5 * interval:
            lost += round(gap / interval) - 1
    return lost


def _pct(values: list[float], p: float) -> float:
    xs = sorted(values)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))] if xs else float("nan")


class Processes:
    """`edge ...` children with their logs in `runtime`; `prefix` goes before each command
    (``netns.exec_prefix(ns)`` runs them inside a network namespace)."""

    def __init__(self, runtime: Path, prefix: Sequence[str] = ()) -> None:
        self.runtime = runtime
        self.prefix = list(prefix)
        self.procs: dict[str, asyncio.subprocess.Process] = {}

    async def start(self, name: str, *argv: str) -> asyncio.subprocess.Process:
        env = dict(os.environ, EDGE_RUNTIME_DIR=str(self.runtime), PYTHONUNBUFFERED="1")
        env.pop("NOTIFY_SOCKET", None)
        log = open(self.runtime / f"{name}.log", "ab")  # noqa: ASYNC230 - a local file, once
        try:
            proc = await asyncio.create_subprocess_exec(
                *self.prefix, sys.executable, "-m", "edge", *argv, stdin=asyncio.subprocess.DEVNULL,
                stdout=log, stderr=log, env=env)
        finally:
            log.close()
        self.procs[name] = proc
        return proc

    async def stop(self) -> None:
        for proc in reversed(list(self.procs.values())):
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                await asyncio.wait_for(proc.wait(), 6)
            except TimeoutError:
                proc.kill()
                await proc.wait()

    def log_tail(self, name: str, lines: int = 15) -> str:
        path = self.runtime / f"{name}.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


async def _wait_live(http: aiohttp.ClientSession, url: str, procs: Processes) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        for name, proc in procs.procs.items():
            if proc.returncode is not None:
                raise RuntimeError(f"{name} exited ({proc.returncode}):\n{procs.log_tail(name)}")
        with contextlib.suppress(aiohttp.ClientError):
            async with http.get(f"{url}/api/state",
                                headers={"Authorization": f"Bearer {TOKEN}"}) as resp:
                if resp.status == 200:
                    state = await resp.json()
                    cams = [c for c in state["cameras"] if c["id"] == CAMERA]
                    if cams and cams[0]["state"] == "live" and cams[0]["streams"]:
                        return
        await asyncio.sleep(0.2)
    raise RuntimeError("the camera did not become live at the uplink within "
                       f"{STARTUP_TIMEOUT_S:.0f} s:\n{procs.log_tail('uplink')}")


async def _sessions(http: aiohttp.ClientSession, url: str) -> dict[str, dict[str, Any]]:
    async with http.get(f"{url}/api/state", headers={"Authorization": f"Bearer {TOKEN}"}) as r:
        state = await r.json()
    return {s["session_id"]: s for s in state["sessions"]}


@dataclass
class Phase:
    cpu_pct: float
    lost: int
    sent: int
    uplink_p95_ms: float | None = None  # the worst session's camera-receipt -> aiortc


async def _phase(http: aiohttp.ClientSession, url: str, pid: int, seconds: float,
                 viewers: list[Viewer]) -> Phase:
    """CPU of the uplink over `seconds`, and the frames the viewers lost meanwhile.

    Lost: frames the uplink sent a viewer that it did not decode, plus frames
    dropped for it before sending (fell behind) or lost on the media plane.
    """
    before = await _sessions(http, url)
    decoded0 = [v.client.stats.frames for v in viewers]
    c0, t0 = _cpu_seconds(pid), time.monotonic()
    await asyncio.sleep(seconds)
    cpu = (_cpu_seconds(pid) - c0) / (time.monotonic() - t0) * 100
    after = await _sessions(http, url)
    lost = sent_total = 0
    for v, d0 in zip(viewers, decoded0, strict=True):
        sid = (v.client.location or "").rsplit("/", 1)[-1]
        a, b = before.get(sid), after.get(sid)
        if a is None or b is None:
            continue
        sent = b["frames_sent"] - a["frames_sent"]
        sent_total += sent
        dropped = (b["frames_dropped"] - a["frames_dropped"]) + (
            b["source_lost"] - a["source_lost"])
        lost += max(0, sent - (v.client.stats.frames - d0)) + dropped
    delays = [s["uplink_delay_ms"]["p95"] for s in after.values() if s.get("uplink_delay_ms")]
    return Phase(cpu, lost, sent_total, max(delays) if delays else None)


@dataclass
class BenchBus:
    """A broker in a thread of the bench, on a private runtime dir (ipc sockets)."""

    runtime: Path
    endpoints: Endpoints
    broker: Broker
    thread: threading.Thread

    @classmethod
    def start(cls) -> BenchBus:
        runtime = Path(tempfile.mkdtemp(prefix="edge-bl-"))
        endpoints = Endpoints(pub=f"ipc://{runtime}/bus-pub.sock",
                              sub=f"ipc://{runtime}/bus-sub.sock",
                              router=f"ipc://{runtime}/bus-router.sock", runtime_dir=runtime)
        broker = Broker(endpoints)
        broker.bind()
        thread = threading.Thread(target=broker.run, name="bench-broker", daemon=True)
        thread.start()
        return cls(runtime, endpoints, broker, thread)

    def stop(self) -> None:
        self.broker.stop()
        self.thread.join(5)
        shutil.rmtree(self.runtime, ignore_errors=True)


async def run(viewers: int, seconds: float, warmup: float,
              stock_receiver: bool = False, stream: str = "main") -> dict[str, Any]:
    bus = BenchBus.start()
    runtime = bus.runtime
    rtsp_port, http_port = _free_port(), _free_port()
    (runtime / "uplink.token").write_text(TOKEN + "\n")
    config = runtime / "vehicle.toml"
    config.write_text(
        f'vehicle = "bench"\n[bus]\nruntime_dir = "{runtime}"\n'
        f'[[cameras]]\nid = "{CAMERA}"\nname = "Bench"\n'
        f'main = "rtsp://127.0.0.1:{rtsp_port}/{CAMERA}/main"\n'
        + (f'sub = "rtsp://127.0.0.1:{rtsp_port}/{CAMERA}/sub"\n' if stream != "main" else "")
        + f'[uplink]\nlisten = "127.0.0.1:{http_port}"\ntoken = {{ file = "uplink.token" }}\n')
    url = f"http://127.0.0.1:{http_port}"
    procs = Processes(runtime)
    clients: list[Viewer] = []
    try:
        await procs.start("sim-camera", "sim", "camera", "--name", CAMERA, "--port",
                          str(rtsp_port), "--live")
        await procs.start("camera", "run", f"camera@{CAMERA}", "--config", str(config))
        uplink = await procs.start("uplink", "run", "uplink", "--config", str(config))
        async with aiohttp.ClientSession() as http:
            await _wait_live(http, url, procs)
            await asyncio.sleep(warmup)
            idle = await _phase(http, url, uplink.pid, min(seconds, 3.0), [])

            async def add_viewer(phase: int) -> Viewer:
                client = WhepViewer(f"{url}/whep/{CAMERA}?profile={stream}", TOKEN, http=http,
                                    marker_frames=not stock_receiver)
                viewer = Viewer(client, time.time_ns() // 1_000_000, phase=phase)
                viewer.client.on_frame = lambda f, v=viewer: _on_frame(v, f)
                clients.append(viewer)
                await viewer.client.start()
                await viewer.client.wait_frames(1, 10)
                return viewer

            await add_viewer(0)
            await asyncio.sleep(warmup)
            for v in clients:
                v.phase = 1
            one = await _phase(http, url, uplink.pid, seconds, clients)
            many = one
            if viewers > 1:
                await asyncio.gather(*(add_viewer(0) for _ in range(viewers - 1)))
                await asyncio.sleep(warmup)
                for v in clients:
                    v.phase = 2
                many = await _phase(http, url, uplink.pid, seconds, clients)
            for v in clients:
                v.phase = 3  # stop counting before the viewers close
            measured = 2 if viewers > 1 else 1
            latencies = [ms for v in clients for ph, ms in v.latencies if ph == measured]
            gaps = sum(_gaps([s for ph, s in v.stamps if ph == measured]) for v in clients)
            first = [v.client.stats.first_frame_ms or float("nan") for v in clients]
            received = sum(1 for v in clients for ph, _ in v.stamps if ph == measured)
            for v in clients:
                await v.client.close()
    finally:
        for v in clients:
            with contextlib.suppress(Exception):
                await v.client.close()
        await procs.stop()
        bus.stop()
    cpu_idle, cpu_one, cpu_n = idle.cpu_pct, one.cpu_pct, many.cpu_pct
    per_viewer = (cpu_n - cpu_idle) / viewers
    per_additional = (cpu_n - cpu_one) / (viewers - 1) if viewers > 1 else None
    return {
        "viewers": viewers,
        "seconds": seconds,
        "frames_measured": received,
        "p50_ms": round(_pct(latencies, 50), 1),
        "p95_ms": round(_pct(latencies, 95), 1),
        "max_ms": round(max(latencies), 1) if latencies else None,
        "mean_ms": round(statistics.fmean(latencies), 1) if latencies else None,
        "first_frame_ms": round(max(first), 1),
        "first_frame_ms_each": [round(f, 1) for f in first],
        "uplink_delay_p95_ms": many.uplink_p95_ms,
        "frames_lost": many.lost,
        "frames_sent": many.sent,
        "rendered_time_gaps": gaps,
        "catchup_frames": sum(v.catchup for v in clients),
        "unreadable_frames": sum(v.unreadable for v in clients),
        "uplink_cpu_idle_pct": round(cpu_idle, 1),
        "uplink_cpu_1_viewer_pct": round(cpu_one, 1),
        "uplink_cpu_n_viewers_pct": round(cpu_n, 1),
        "cpu_per_viewer_pct": round(per_viewer, 1),
        "cpu_per_additional_viewer_pct": None if per_additional is None
        else round(per_additional, 1),
        "stream": STREAMS[stream],
        "receiver": "aiortc, stock jitter buffer (+1 frame)" if stock_receiver
        else "aiortc, frames released on the RTP marker",
    }


def print_table(r: dict[str, Any]) -> None:
    n = r["viewers"]
    rows = [
        ("glass-to-glass p50 (ms)", r["p50_ms"]),
        ("glass-to-glass p95 (ms)", r["p95_ms"]),
        ("glass-to-glass max (ms)", r["max_ms"]),
        ("in the uplink (camera rx -> aiortc) p95", r["uplink_delay_p95_ms"]),
        ("first frame after POST (ms, worst)", r["first_frame_ms"]),
        ("frames sent / lost", f'{r["frames_sent"]} / {r["frames_lost"]}'),
        ("uplink CPU idle (% of a core)", r["uplink_cpu_idle_pct"]),
        ("uplink CPU, 1 viewer", r["uplink_cpu_1_viewer_pct"]),
        *([(f"uplink CPU, {n} viewers", r["uplink_cpu_n_viewers_pct"])] if n > 1 else []),
        ("CPU per viewer", r["cpu_per_viewer_pct"]),
        ("CPU per additional viewer", r["cpu_per_additional_viewer_pct"]
         if r["cpu_per_additional_viewer_pct"] is not None else "n/a (1 viewer)"),
    ]
    print(f"edge bench latency: {n} viewer(s), {r['stream']}, {r['seconds']:g} s measured,\n"
          f"  viewers: {r['receiver']}")
    for name, value in rows:
        print(f"  {name:38} {value:>10}")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("latency", help="glass-to-glass latency camera -> uplink -> WHEP viewers")
    p.add_argument("--viewers", type=int, default=1, help="WHEP viewers of one camera (default 1)")
    p.add_argument("--seconds", type=float, default=10.0, help="measured seconds per phase")
    p.add_argument("--warmup", type=float, default=2.0, help="seconds before each phase")
    p.add_argument("--stock-receiver", action="store_true",
                   help="viewers use aiortc's own jitter buffer (adds a frame interval)")
    p.add_argument("--stream", choices=tuple(STREAMS), default="main",
                   help="the stream the viewers ask for (default main)")
    p.add_argument("--link", choices=tuple(PROFILES), default=None,
                   help="across the link emulator with this profile: the vehicle's processes "
                        "in its vehicle namespace, the viewers in its centre namespace (root); "
                        "--seconds is then the whole run after the POSTs")
    p.add_argument("--redundancy", choices=("auto", "always", "off"), default="auto",
                   help="the uplink's [uplink] redundancy with --link (default auto: every "
                        "packet twice to a satellite viewer); off is the baseline")
    p.set_defaults(func=cmd_bench_latency)


def cmd_bench_latency(args: argparse.Namespace) -> int:
    from edge.cli import OperatorError

    if args.viewers < 1:
        raise OperatorError("--viewers must be at least 1")
    if not args.seconds > 0:
        raise OperatorError(f"--seconds must be more than 0, got {args.seconds:g}")
    if args.link is not None:
        return _bench_link(args)
    try:
        result = asyncio.run(run(args.viewers, args.seconds, args.warmup, args.stock_receiver,
                                 args.stream))
    except RuntimeError as e:
        raise OperatorError(str(e)) from None
    print_table(result)
    print(json.dumps(result))
    return 0


def _bench_link(args: argparse.Namespace) -> int:
    # Imported here: the emulator needs pyroute2, which the rest of `edge` never loads.
    from edge.bench.latency_link import cannot_run, print_link_table, run_link
    from edge.cli import OperatorError

    if (why := cannot_run()) is not None:
        print(f"edge: bench latency --link: {why}", file=sys.stderr)
        return 2
    try:
        result = asyncio.run(run_link(args.link, args.viewers, args.seconds, args.stream,
                                      args.stock_receiver, args.redundancy))
    except RuntimeError as e:
        raise OperatorError(str(e)) from None
    except OSError as e:
        raise OperatorError(f"cannot build the emulated network: {e.strerror or e}") from None
    print_link_table(result)
    print(json.dumps(result))
    return 0
