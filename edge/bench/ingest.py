"""`edge bench ingest --cameras N`: our camera path against a bare PyAV demux loop.

Three processes, so each measured figure is one process's own CPU:

- **sim**: N simulated dome cameras (one process, N ports, one pre-encoded
  720p30 loop at about 2 Mbit/s with a 1 s GOP, replayed with live RTP
  timestamps), RTP over TCP.
- **baseline**: N threads, each ``av.open(url, options={"rtsp_transport":
  "tcp"})`` and ``for packet in container.demux(video)``: the least any
  Python ingest can do.
- **edge**: what ``camera@ID`` does for each camera: `RtspSource` (reader
  thread, parameter sets, stats) into a `MediaPublisher` (GOP cache, ipc PUB).
  Its CPU is the figure compared with the baseline: ingest and publish, the
  camera service's whole job.
- **floor** (with ``--breakdown``): the baseline, each packet also sent as it is on a
  bare PUB socket of its stream to bare SUB sockets in a process of their own: the least
  any design that sends each unit on a ZeroMQ socket can cost, ours included.
- **consumer**: one `MediaSubscriber` per camera in a process of its own (as
  the uplink and recorder are), counting what arrives; its CPU is reported
  beside, not in the ratio.

Baseline and edge run one after the other against the same sim process.
Each waits until every stream is flowing, lets it settle, then measures
``getrusage(RUSAGE_SELF)`` over the next `--seconds`, and splits it by thread
(``/proc/self/task``): the reader threads (demux, unit building, publishing),
ZeroMQ's own threads (its I/O thread moves every published unit to the socket)
and the rest (the event loop), each in CPU µs per frame: where the cost of the
media plane lands, for choosing its design.  Frames lost counts, per
stream, missing presentation timestamps between consecutive frames the
consumer got (the simulator advances its timestamps for every frame of its
schedule, including any it skips) plus media-plane sequence gaps: it covers
the whole way from the simulator's schedule to the consumer.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

TARGET_RATIO = 1.3
FPS = 30
PTS_STEP = 90_000 // FPS  # RTP clock ticks per frame
MAIN = (1280, 720)
BITRATE = 2_000_000
SETTLE_S = 3.0
START_TIMEOUT_S = 30.0


@dataclass
class StreamCount:
    frames: int = 0
    bytes: int = 0
    lost: int = 0  # missing presentation timestamps between consecutive frames
    last_pts: int | None = None

    def add(self, pts: int | None, size: int) -> None:
        self.frames += 1
        self.bytes += size
        if pts is not None:
            if self.last_pts is not None:
                step = pts - self.last_pts
                if step > PTS_STEP * 3 // 2:
                    self.lost += round(step / PTS_STEP) - 1
            self.last_pts = pts


@dataclass
class Window:
    """One measured run of one process."""

    kind: str
    cameras: int
    seconds: float
    cpu_s: float
    frames: int
    bytes: int
    frames_lost: int
    detail: dict[str, int] = field(default_factory=dict)
    # CPU seconds over the window by kind of thread (see `_thread_cpu_s`).
    threads: dict[str, float] = field(default_factory=dict)

    @property
    def cpu_s_per_stream_min(self) -> float:
        return self.cpu_s / (self.cameras * self.seconds / 60)

    @property
    def expected(self) -> int:
        return round(self.cameras * self.seconds * FPS)

    def us_per_frame(self) -> dict[str, float]:
        """The thread split as CPU µs per frame received (frames differ a little between runs)."""
        frames = max(self.frames, 1)
        return {kind: round(1e6 * cpu / frames, 1) for kind, cpu in self.threads.items()}


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


THREAD_KINDS = ("readers", "zmq", "rest")


def _thread_cpu_s(readers: set[int]) -> dict[str, float]:
    """On-CPU seconds so far of this process's threads: `readers` (native ids), ZeroMQ's, the rest.

    A thread that ended since the last reading takes its time with it: the
    measured windows run between two readings with the same threads alive.
    """
    split = dict.fromkeys(THREAD_KINDS, 0.0)
    tick = os.sysconf("SC_CLK_TCK")
    for task in Path("/proc/self/task").iterdir():
        try:
            comm = (task / "comm").read_text().strip()
            try:
                cpu = int((task / "schedstat").read_text().split()[0]) / 1e9
            except FileNotFoundError:  # a kernel without schedstats: clock ticks
                fields = (task / "stat").read_text().rpartition(")")[2].split()
                cpu = (int(fields[11]) + int(fields[12])) / tick
        except (OSError, ValueError, IndexError):
            continue  # the thread ended while being read
        kind = ("readers" if int(task.name) in readers
                else "zmq" if comm.startswith("ZMQbg") else "rest")
        split[kind] += cpu
    return split


def _proc_cpu_s(pid: int) -> float:
    """CPU seconds of another process (utime + stime from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _totals(counts: list[StreamCount]) -> tuple[int, int, int]:
    return (sum(c.frames for c in counts), sum(c.bytes for c in counts),
            sum(c.lost for c in counts))


# --------------------------------------------------------------------------- sim process

async def _serve_sims(cameras: int) -> None:
    from drivers.sim.camera import SimCamera

    sims = [SimCamera("bench", main=MAIN, sub=None, main_bitrate=BITRATE, fps=FPS, gop=FPS)
            for _ in range(cameras)]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        for sim in sims:  # one encode: the loop is shared by every camera of the process
            await sim.start()
        print(json.dumps({"urls": [sim.url() for sim in sims]}), flush=True)
        await stop.wait()
    finally:
        for sim in sims:
            await sim.close()


# --------------------------------------------------------------------------- baseline process

def _baseline(urls: list[str], seconds: float, publish_dir: str | None = None) -> Window:
    """The bare demux; with `publish_dir`, the floor of any ZeroMQ media plane: each packet
    also sent as it is on a bare PUB socket of its stream (ipc in that dir), to bare SUB
    sockets in a consumer process of its own."""
    import av
    import zmq

    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    socks: list[zmq.Socket[bytes]] = []
    consumer: subprocess.Popen[str] | None = None
    if publish_dir is not None:
        for i in range(len(urls)):
            sock = ctx.socket(zmq.PUB)
            sock.setsockopt(zmq.LINGER, 0)
            sock.bind(f"ipc://{publish_dir}/floor-{i}.sock")
            socks.append(sock)
        consumer = _child("_consume_bare",
                          *(f"--url=ipc://{publish_dir}/floor-{i}.sock" for i in range(len(urls))))
    counts = [StreamCount() for _ in urls]
    started = [threading.Event() for _ in urls]
    stop = threading.Event()
    errors: list[str] = []
    readers: set[int] = set()

    def read(i: int) -> None:
        readers.add(threading.get_native_id())
        try:
            container = av.open(urls[i], options={"rtsp_transport": "tcp"})
        except Exception as exc:  # a bench reports, it does not crash
            errors.append(f"{urls[i]}: {exc}")
            started[i].set()
            return
        try:
            video = container.streams.video[0]
            count = counts[i]
            sock = socks[i] if socks else None
            for packet in container.demux(video):
                if stop.is_set():
                    break
                if packet.size:
                    if sock is not None:
                        sock.send(memoryview(packet))
                    count.add(packet.pts, packet.size)
                    started[i].set()
        finally:
            container.close()

    threads = [threading.Thread(target=read, args=(i,), daemon=True) for i in range(len(urls))]
    for t in threads:
        t.start()
    deadline = time.monotonic() + START_TIMEOUT_S
    for ev in started:
        ev.wait(max(0.0, deadline - time.monotonic()))
    if errors or not all(ev.is_set() for ev in started):
        raise SystemExit(f"baseline: streams did not start: {errors or 'timeout'}")
    time.sleep(SETTLE_S)
    frames0, bytes0, lost0 = _totals(counts)
    split0, cpu0, t0 = _thread_cpu_s(readers), _cpu_s(), time.monotonic()
    time.sleep(seconds)
    cpu1, t1, split1 = _cpu_s(), time.monotonic(), _thread_cpu_s(readers)
    frames1, bytes1, lost1 = _totals(counts)
    stop.set()
    for t in threads:
        t.join(5)
    detail: dict[str, int] = {}
    if consumer is not None:
        consumer.send_signal(signal.SIGTERM)
        consumed = _result(consumer, "_consume_bare", 30)
        detail["consumer_frames"] = consumed["frames"]
    for sock in socks:
        sock.close(linger=0)
    ctx.destroy(linger=0)
    return Window("floor" if socks else "baseline", len(urls), t1 - t0, cpu1 - cpu0,
                  frames1 - frames0, bytes1 - bytes0, lost1 - lost0, detail,
                  threads={k: split1[k] - split0[k] for k in THREAD_KINDS})


def _consume_bare(endpoints: list[str]) -> None:
    """The floor's other end: bare SUB sockets, every message counted, until SIGTERM."""
    import zmq

    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    poller = zmq.Poller()
    socks = []
    for endpoint in endpoints:
        sock = ctx.socket(zmq.SUB)
        sock.setsockopt(zmq.SUBSCRIBE, b"")
        sock.connect(endpoint)
        poller.register(sock, zmq.POLLIN)
        socks.append(sock)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    frames = 0
    while not stop.is_set():
        for sock, _ in poller.poll(100):
            while True:
                try:
                    sock.recv(zmq.NOBLOCK, copy=False)
                except zmq.Again:
                    break
                frames += 1
    print(json.dumps({"frames": frames}), flush=True)
    for sock in socks:
        sock.close(linger=0)
    ctx.destroy(linger=0)


# --------------------------------------------------------------------------- edge process

async def _edge(urls: list[str], seconds: float, tmp: str, media: bool = True) -> Window:
    """Our path; without `media`, only the ingest (its sink counts): the breakdown row."""
    import zmq

    from drivers.rtsp.source import RtspSource
    from drivers.source import AccessUnit
    from edge.media.publisher import MediaPublisher

    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    publishers = ([MediaPublisher(ctx, f"ipc://{tmp}/media-{i}.sock") for i in range(len(urls))]
                  if media else [])
    counts = [StreamCount() for _ in urls]
    flowing = [asyncio.Event() for _ in urls]
    loop = asyncio.get_running_loop()
    readers: set[int] = set()

    def sink(i: int) -> Any:
        # The camera service's hand-off (edge.services.camera._Stream), in the
        # reader thread; the service also posts each keyframe (one a second) to
        # its loop for thumbnails, which costs nothing measurable.
        publisher = publishers[i] if media else None
        count = counts[i]

        def on_access_unit(au: AccessUnit) -> None:
            if publisher is not None:
                publisher.publish(au.data, keyframe=au.keyframe, pts=au.pts, dts=au.dts,
                                  time_base=au.time_base, codec=au.codec,
                                  received_ns=au.received_ns)
            count.add(au.pts, len(au.data))
            if count.frames == 1:
                readers.add(threading.get_native_id())
                loop.call_soon_threadsafe(flowing[i].set)
        return on_access_unit

    ingests = [RtspSource(url, transport="tcp", name=f"bench-{i}", sink=sink(i))
               for i, url in enumerate(urls)]
    consumer = None
    if media:
        consumer = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "edge.bench.ingest", "_consume",
            *(f"--url={p.endpoint}" for p in publishers), stdout=asyncio.subprocess.PIPE)
    consumed: dict[str, Any] = {}
    try:
        for ingest in ingests:
            await ingest.start()
        async with asyncio.timeout(START_TIMEOUT_S):
            for ev in flowing:
                await ev.wait()
        await asyncio.sleep(SETTLE_S)

        def snapshot() -> tuple[int, int, int, int]:
            frames, size, lost = _totals(counts)
            return frames, size, lost, sum(i.stats.frames_dropped for i in ingests)

        before = snapshot()
        split0, cpu0, t0 = _thread_cpu_s(readers), _cpu_s(), time.monotonic()
        await asyncio.sleep(seconds)
        cpu1, t1, split1 = _cpu_s(), time.monotonic(), _thread_cpu_s(readers)
        after = snapshot()
    finally:
        for ingest in ingests:
            await ingest.stop()
        if consumer is not None:
            if consumer.returncode is None:
                consumer.send_signal(signal.SIGTERM)
            out, _ = await consumer.communicate()
            if out.strip():
                consumed = json.loads(out.decode().strip().splitlines()[-1])
        for pub in publishers:
            pub.close()
        ctx.destroy(linger=0)
    frames, size, lost, dropped = (a - b for a, b in zip(after, before, strict=True))
    detail = {"ingest_dropped": dropped}
    if media:
        # Loss anywhere from the camera's schedule to the consumer, over the whole run.
        detail.update(consumer_frames=consumed.get("frames", 0),
                      consumer_lost=consumed.get("lost", 0),
                      media_plane_missed=consumed.get("missed", 0),
                      consumer_cpu_ms_per_s=round(1000 * consumed.get("cpu_s", 0.0)
                                                  / max(consumed.get("seconds", 1.0), 1e-6)))
        lost = max(lost, consumed.get("lost", 0) + consumed.get("missed", 0))
        if not consumed:
            lost = max(lost, 1)  # no report from the consumer: nothing is proven
    return Window("edge" if media else "ingest", len(urls), t1 - t0, cpu1 - cpu0, frames, size,
                  lost, detail, {k: split1[k] - split0[k] for k in THREAD_KINDS})


async def _consume(endpoints: list[str]) -> None:
    """The media plane's other end: count every unit, until SIGTERM."""
    import zmq

    from edge.media.subscriber import MediaSubscriber

    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    subscribers = [MediaSubscriber(ctx, e) for e in endpoints]
    counts = [StreamCount() for _ in endpoints]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    async def consume(i: int) -> None:
        async for frame in subscribers[i]:
            counts[i].add(frame.pts, len(frame.data))

    cpu0, t0 = _cpu_s(), time.monotonic()
    tasks = [asyncio.create_task(consume(i)) for i in range(len(endpoints))]
    await stop.wait()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    frames, _, lost = _totals(counts)
    print(json.dumps({"frames": frames, "lost": lost,
                      "missed": sum(s.stats.missed for s in subscribers),
                      "cpu_s": _cpu_s() - cpu0, "seconds": time.monotonic() - t0}), flush=True)
    for sub in subscribers:
        sub.close()
    ctx.destroy(linger=0)


# --------------------------------------------------------------------------- orchestration

def _child(role: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "edge.bench.ingest", role, *args],
                            stdout=subprocess.PIPE, text=True)


def _result(proc: subprocess.Popen[str], role: str, timeout: float) -> dict[str, Any]:
    out, _ = proc.communicate(timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{role.lstrip('_')} run failed (exit {proc.returncode})")
    data: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return data


def _measure(role: str, urls: list[str], seconds: float, sim_pid: int) -> tuple[Window, float]:
    """Run one measuring process; its window and the simulator's CPU % meanwhile."""
    sim0, t0 = _proc_cpu_s(sim_pid), time.monotonic()
    proc = _child(role, "--seconds", str(seconds), *(f"--url={u}" for u in urls))
    try:
        data = _result(proc, role, START_TIMEOUT_S + SETTLE_S + seconds + 30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    sim_pct = 100 * (_proc_cpu_s(sim_pid) - sim0) / (time.monotonic() - t0)
    return Window(**data), sim_pct


def run(cameras: int, seconds: float, repeat: int, breakdown: bool = False) -> dict[str, Any]:
    sim = _child("_sim", "--cameras", str(cameras))
    try:
        assert sim.stdout is not None
        line = sim.stdout.readline()
        if not line:
            raise RuntimeError("the simulated cameras did not start")
        urls: list[str] = json.loads(line)["urls"]
        runs: list[tuple[Window, Window, float, float]] = []
        ingest_only: list[Window] = []
        floors: list[Window] = []
        for _ in range(repeat):
            base, base_sim = _measure("_baseline", urls, seconds, sim.pid)
            if breakdown:
                ingest_only.append(_measure("_ingest", urls, seconds, sim.pid)[0])
                floors.append(_measure("_floor", urls, seconds, sim.pid)[0])
            ours, our_sim = _measure("_edge", urls, seconds, sim.pid)
            runs.append((base, ours, base_sim, our_sim))
    finally:
        sim.send_signal(signal.SIGTERM)
        try:
            sim.wait(10)
        except subprocess.TimeoutExpired:
            sim.kill()
            sim.wait()
    ratios = [o.cpu_s_per_stream_min / b.cpu_s_per_stream_min for b, o, _, _ in runs]
    ratio = statistics.median(ratios)
    # The run whose ratio is the median is the one shown.
    base, ours, base_sim, our_sim = runs[ratios.index(sorted(ratios)[(len(ratios) - 1) // 2])]
    frames_lost = sum(o.frames_lost for _, o, _, _ in runs)
    sustained = all(o.frames >= 0.98 * o.expected for _, o, _, _ in runs)
    ratio_ok = ratio <= TARGET_RATIO

    def row(name: str, a: str, b: str, note: str = "") -> None:
        print(f"{name:36} {a:>18} {b:>18}  {note}".rstrip())

    row("measure", "baseline (PyAV)", "edge (ingest+pub)")
    row("CPU s per stream-minute", f"{base.cpu_s_per_stream_min:.3f}",
        f"{ours.cpu_s_per_stream_min:.3f}")
    row(f"CPU % of one core, {cameras} streams", f"{100 * base.cpu_s / base.seconds:.1f}",
        f"{100 * ours.cpu_s / ours.seconds:.1f}")
    # The ingest-alone run shown beside is the median one, as for the ratio.
    only = (sorted(ingest_only, key=lambda w: w.cpu_s_per_stream_min)[(len(ingest_only) - 1) // 2]
            if ingest_only else None)
    if only is not None:
        row("  of which ingest alone (no media)", "", f"{only.cpu_s_per_stream_min:.3f}",
            f"ratio {only.cpu_s_per_stream_min / base.cpu_s_per_stream_min:.3f}; "
            "the rest is publishing")
    floor = (sorted(floors, key=lambda w: w.cpu_s_per_stream_min)[(len(floors) - 1) // 2]
             if floors else None)
    if floor is not None:
        # No design that sends each unit on a ZeroMQ socket of its own can cost less.
        row("  floor: bare demux + bare PUB", f"{floor.cpu_s_per_stream_min:.3f}", "",
            f"ratio {floor.cpu_s_per_stream_min / base.cpu_s_per_stream_min:.3f}; "
            f"consumer got {floor.detail.get('consumer_frames', 0)}")
    split = {w.kind: w.us_per_frame() for w in (base, ours, *([only] if only else []))}
    row("CPU us per frame, by thread", "", "", "ingest alone" if only else "")
    for kind, label in (("readers", "  readers (demux, units, publish)"),
                        ("zmq", "  ZeroMQ's threads (I/O)"), ("rest", "  event loop and the rest")):
        row(label, f"{split['baseline'][kind]:.1f}", f"{split['edge'][kind]:.1f}",
            f"{split['ingest'][kind]:.1f}" if only else "")
    row("frames received / expected", f"{base.frames}/{base.expected}",
        f"{ours.frames}/{ours.expected}", "" if sustained else "NOT SUSTAINED")
    row("frames lost", str(base.frames_lost), str(ours.frames_lost),
        f"media plane missed {ours.detail.get('media_plane_missed', 0)}, "
        f"ingest dropped {ours.detail.get('ingest_dropped', 0)}")
    row("consumer process: frames, CPU %", "",
        f"{ours.detail.get('consumer_frames', 0)}, "
        f"{ours.detail.get('consumer_cpu_ms_per_s', 0) / 10:.1f}", "not in the ratio")
    row("kbit/s per stream", f"{base.bytes * 8 / 1000 / base.seconds / cameras:.0f}",
        f"{ours.bytes * 8 / 1000 / ours.seconds / cameras:.0f}")
    row("simulator CPU % meanwhile", f"{base_sim:.1f}", f"{our_sim:.1f}")
    note = f"target <= {TARGET_RATIO:g}: {'ok' if ratio_ok else 'MISSED'}"
    label = "ratio edge/baseline" + (f" (median of {repeat})" if repeat > 1 else "")
    row(label, "", f"{ratio:.3f}", note)
    print(f"({cameras} cameras x {MAIN[0]}x{MAIN[1]} {FPS} fps ~{BITRATE // 1000} kbit/s, "
          f"RTP/TCP; {seconds:g} s measured after {SETTLE_S:g} s settling)")
    return {
        "bench": "ingest",
        "cameras": cameras,
        "seconds": seconds,
        "repeat": repeat,
        "ratio": round(ratio, 3),
        "ratios": [round(r, 3) for r in ratios],
        "frames_lost": frames_lost,
        "baseline_frames_lost": sum(b.frames_lost for b, _, _, _ in runs),
        "baseline_cpu_s_per_stream_min": round(base.cpu_s_per_stream_min, 4),
        "edge_cpu_s_per_stream_min": round(ours.cpu_s_per_stream_min, 4),
        "baseline_cpu_pct": round(100 * base.cpu_s / base.seconds, 1),
        "edge_cpu_pct": round(100 * ours.cpu_s / ours.seconds, 1),
        "frames_expected": ours.expected,
        "frames_received": ours.frames,
        "sim_cpu_pct": round(our_sim, 1),
        "ingest_only_cpu_s_per_stream_min": (
            round(only.cpu_s_per_stream_min, 4) if only else None),
        # CPU µs per frame by thread: readers, ZeroMQ's threads, the rest.
        "baseline_us_per_frame": split["baseline"],
        "edge_us_per_frame": split["edge"],
        "ingest_only_us_per_frame": split.get("ingest"),
        # The least a ZeroMQ media plane costs: the bare demux, each packet sent on a bare PUB.
        "floor_ratio": (round(floor.cpu_s_per_stream_min / base.cpu_s_per_stream_min, 3)
                        if floor else None),
        "floor_us_per_frame": floor.us_per_frame() if floor else None,
        "sustained": sustained and frames_lost == 0,
        "target_ratio": TARGET_RATIO,
        "ok": ratio_ok and sustained and frames_lost == 0,
    }


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("ingest", help="camera ingest + media plane against a bare PyAV demux",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cameras", type=int, default=4, help="simulated cameras (default 4)")
    p.add_argument("--seconds", type=float, default=20.0,
                   help="measured seconds of each run (default 20)")
    p.add_argument("--repeat", type=int, default=1,
                   help="baseline/edge pairs; the median ratio is reported (default 1)")
    p.add_argument("--breakdown", action="store_true",
                   help="also measure the ingest alone, without the media plane, and the "
                        "floor of a ZeroMQ media plane (the bare demux, each packet on a bare "
                        "PUB socket)")
    p.set_defaults(func=cmd_bench_ingest)


def cmd_bench_ingest(args: argparse.Namespace) -> int:
    from edge.cli import OperatorError

    if args.cameras < 1 or args.seconds <= 0 or args.repeat < 1:
        raise OperatorError("--cameras and --repeat must be at least 1, --seconds positive")
    try:
        result = run(args.cameras, args.seconds, args.repeat, args.breakdown)
    except (RuntimeError, subprocess.TimeoutExpired) as e:
        raise OperatorError(f"bench ingest: {e}") from None
    print(json.dumps(result), flush=True)
    return 0


# --------------------------------------------------------------------------- child entry points

def _main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(prog="python -m edge.bench.ingest")
    p.add_argument("role", choices=("_sim", "_baseline", "_floor", "_ingest", "_edge", "_consume",
                                     "_consume_bare"))
    p.add_argument("--cameras", type=int, default=1)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--url", dest="urls", action="append", default=[])
    args = p.parse_args(argv)
    if args.role == "_sim":
        asyncio.run(_serve_sims(args.cameras))
        return
    if args.role == "_consume":
        asyncio.run(_consume(args.urls))
        return
    if args.role == "_consume_bare":
        _consume_bare(args.urls)
        return
    if args.role == "_baseline":
        window = _baseline(args.urls, args.seconds)
    elif args.role == "_floor":
        tmp = tempfile.mkdtemp(prefix="edge-bi-")
        try:
            window = _baseline(args.urls, args.seconds, tmp)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    else:
        tmp = tempfile.mkdtemp(prefix="edge-bi-")  # the media plane's ipc sockets
        try:
            window = asyncio.run(_edge(args.urls, args.seconds, tmp, args.role == "_edge"))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(asdict(window)), flush=True)


if __name__ == "__main__":
    _main(sys.argv[1:])
