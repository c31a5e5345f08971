"""`edge bench record --cameras N`: the recorder service against a bare PyAV remux.

Processes, so that each measured figure is one process's own CPU (user + system
time of all its threads, from ``getrusage`` or ``/proc/PID/stat``):

- **baseline** (a child, first): N streams of the same units, paced as the
  cameras send them, each remuxed by PyAV into a fragmented MP4 file with the
  recorder's own muxer options (``movflags``, 1 s ``frag_duration``,
  ``flush_packets``): ``av.Packet(data)``, timestamps, ``container.mux``. No
  media plane, no queue, no thread hand-off, no ``fdatasync``, no catalog: the
  least any Python recorder can do.
- **recorder**: the real service, ``edge run recorder --config`` with a
  generated config (N cameras, main stream only, ``[recorder]`` into a private
  directory), beside ``edge run bus`` (the broker), all on a private runtime
  dir: as the vehicle runs them. Its CPU over the video phase is the figure
  compared with the baseline.
- **feeder**: N :class:`~edge.media.publisher.MediaPublisher` on the media
  endpoints the recorder reads (``Endpoints.media(camera, "main")``), each
  stamping units as the camera service does. It starts only once the recorder
  has subscribed to every stream, so every unit published is one the recorder
  could have written.
- **bus feeder** (during the bus phase): ``BusClient.publish`` of 64-byte
  ``BenchSample`` messages on ``bench/record`` at ``--bus-rate`` msg/s.

The units are the simulated camera's encoded loop (``drivers.sim.camera``,
1280x720 30 fps H.264, 2 Mbit/s, a 1 s GOP, cached on disk; the same loop as
``edge bench ingest``), replayed with increasing timestamps. Streams are
paced on one schedule and staggered by 1/(30 N) s, as unsynchronised
cameras are.

Phases, one recorder run: once the recorder has subscribed, 5 s **idle**
(nothing flowing: its status loop and its threads' wake-ups, shown beside so
that a per-unit cost can be told from a fixed one); the feeder starts; after
settling, the **video phase** (``--seconds``) measures the recorder's CPU per
stream-minute; then the **bus phase** (``--bus-seconds`` at ``--bus-rate``, the
video going on) measures what recording the bus adds. Then the feeders stop,
the recorder is let drain (its ``recorder/status`` says what it has written)
and stopped with SIGTERM, as systemd stops it.

Everything lost is counted from the files, read back after the run:
frames lost = units published minus packets in the MP4 files (demuxed by
PyAV, every file; the catalog's frame counts are checked against them);
bus messages lost = messages sent minus distinct ones found in the MCAP files
(:func:`edge.recorder.bus_log.read`). Write MB/s is the bytes in the files over
the time they cover. Machines here are shared: the ratio is the figure to
compare, not the absolute times.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from edge.runtime.processes import stop_process

TARGET_RATIO = 1.3
TARGET_BUS_RATE = 20_000
FPS = 30
PTS_STEP = 90_000 // FPS
MAIN = (1280, 720)
BITRATE = 2_000_000
LOOP_S = 2.0
TOPIC = "bench/record"
PAD = b"x" * 64
SETTLE_S = 3.0
IDLE_S = 5.0
BUS_SETTLE_S = 0.5  # PUB/SUB "slow joiner": let the broker's subscriptions reach the publisher
START_TIMEOUT_S = 60.0
DRAIN_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 10.0


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _cpu_split() -> tuple[float, float]:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime, r.ru_stime


def _proc_cpu(pid: int) -> tuple[float, float]:
    """User and system CPU seconds of another process (from /proc), all its threads."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0, 0.0
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def proc_cpu_s(pid: int) -> float:
    return sum(_proc_cpu(pid))


def bench_camera_id(i: int) -> str:
    return f"cam{i + 1:02d}"


def encoded_units() -> tuple[list[tuple[bytes, bool]], bytes]:
    """The encoded loop as (Annex-B unit, keyframe), starting at a keyframe, and its
    parameter sets as Annex-B extradata."""
    from drivers.rtsp.annexb import join_annexb
    from drivers.sim.camera.encoder import EncoderSettings
    from drivers.sim.camera.loop_cache import get_loop

    loop = get_loop(EncoderSettings("bench", *MAIN, fps=FPS, bitrate=BITRATE, gop=FPS), LOOP_S)
    first = loop.keyframe_indices[0]
    aus = loop.aus[first:] + loop.aus[:first]
    extradata = b"".join(b"\x00\x00\x00\x01" + p for p in (loop.params.sps, loop.params.pps))
    return [(join_annexb(au.nals), au.keyframe) for au in aus], extradata


class _Schedule:
    """N streams at 30 fps on one clock, staggered by 1/(30 N) s: event j is stream j % N's
    frame j // N."""

    def __init__(self, cameras: int) -> None:
        self.cameras = cameras
        self.t0 = time.monotonic()
        self.j = 0
        self.late_max_s = 0.0

    def next(self) -> tuple[int, int]:
        """Sleep until the next event is due; its (stream, frame)."""
        due = self.t0 + self.j / (FPS * self.cameras)
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        else:
            self.late_max_s = max(self.late_max_s, -delay)
        stream, frame = self.j % self.cameras, self.j // self.cameras
        self.j += 1
        return stream, frame


# --------------------------------------------------------------------------- baseline process

def _baseline(cameras: int, seconds: float, out: Path) -> dict[str, Any]:
    import io
    from fractions import Fraction

    import av

    from edge.recorder.mp4_segment import _MOVFLAGS  # the recorder's, so both stay the same

    units, extradata = encoded_units()
    time_base = Fraction(1, 90_000)
    out.mkdir(parents=True, exist_ok=True)
    containers = []
    streams = []
    for i in range(cameras):
        container = av.open(str(out / f"{bench_camera_id(i)}.mp4"), "w", format="mp4", options={
            "movflags": _MOVFLAGS, "frag_duration": "1000000", "flush_packets": "1"})
        # PyAV's remux idiom: a stream from a template's parameters, never an encoder.
        scratch = av.open(io.BytesIO(), "w", format="mp4")
        stream = container.add_stream_from_template(scratch.add_stream("h264"), opaque=True)
        scratch.close()
        ctx = stream.codec_context
        assert isinstance(ctx, av.VideoCodecContext)
        ctx.width, ctx.height = MAIN
        ctx.extradata = extradata
        stream.time_base = time_base
        containers.append(container)
        streams.append(stream)
    frames_per_stream = round(seconds * FPS)
    schedule = _Schedule(cameras)
    (u0, s0), t0 = _cpu_split(), time.monotonic()
    for _ in range(frames_per_stream * cameras):
        i, k = schedule.next()
        data, keyframe = units[k % len(units)]
        packet = av.Packet(data)
        packet.pts = packet.dts = k * PTS_STEP
        packet.duration = PTS_STEP
        packet.time_base = time_base
        packet.stream = streams[i]
        packet.is_keyframe = keyframe
        containers[i].mux(packet)
    (u1, s1), t1 = _cpu_split(), time.monotonic()
    for container in containers:
        container.close()
    return {"cpu_s": u1 - u0 + s1 - s0, "sys_s": s1 - s0, "seconds": t1 - t0,
            "published": frames_per_stream * cameras,
            "late_max_ms": round(1000 * schedule.late_max_s, 1)}


# --------------------------------------------------------------------------- feeder processes

def bench_endpoints(runtime: Path) -> Any:
    from edge.bus.endpoints import Endpoints
    from edge.config import BusConfig

    return Endpoints.from_config(BusConfig(), runtime)


def _feed(runtime: Path, cameras: int) -> dict[str, Any]:
    """Publish N streams on the media plane until SIGTERM, once the recorder is on each."""
    from fractions import Fraction

    import zmq

    from edge.media.publisher import MediaPublisher

    stop = False

    def on_term(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    units, _ = encoded_units()
    endpoints = bench_endpoints(runtime)
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    pubs = [MediaPublisher(ctx, endpoints.media(bench_camera_id(i), "main"))
            for i in range(cameras)]
    # Wait for the recorder's subscription on every stream (XPUB hands it to us): from
    # then on every unit published is one it could record.
    deadline = time.monotonic() + START_TIMEOUT_S
    for pub in pubs:
        while True:
            left = deadline - time.monotonic()
            if stop or left <= 0:
                raise SystemExit("feeder: the recorder did not subscribe to every stream")
            if pub.sock.poll(int(min(left, 0.5) * 1000)) and pub.sock.recv()[:1] == b"\x01":
                break
    print(json.dumps({"ready": True}), flush=True)
    sys.stdin.readline()  # the orchestrator measures the recorder idle meanwhile
    time_base = Fraction(1, 90_000)
    published = [0] * cameras
    schedule = _Schedule(cameras)
    cpu0, t0 = _cpu_s(), time.monotonic()
    while not stop:
        i, k = schedule.next()
        data, keyframe = units[k % len(units)]
        pts = k * PTS_STEP
        pubs[i].publish(data, keyframe=keyframe, pts=pts, dts=pts, time_base=time_base,
                        codec="h264", received_ns=time.time_ns())
        published[i] += 1
    result = {"published": published, "cpu_s": _cpu_s() - cpu0, "seconds": time.monotonic() - t0,
              "bytes": sum(p.stats.bytes for p in pubs),
              "late_max_ms": round(1000 * schedule.late_max_s, 1)}
    for pub in pubs:
        pub.close()
    ctx.destroy(linger=0)
    return result


def _bus_feed(runtime: Path, rate: float, seconds: float) -> dict[str, Any]:
    from edge.bus.client import BusClient
    from edge.bus.messages import BenchSample

    async def main() -> dict[str, Any]:
        bus = BusClient(bench_endpoints(runtime), source="bench-record")
        await asyncio.sleep(BUS_SETTLE_S)
        print(json.dumps({"go": True}), flush=True)
        n = round(rate * seconds)
        cpu0, t0 = _cpu_s(), time.monotonic()
        for i in range(n):
            # Sleep only when half a millisecond ahead: a sleep per message at 20,000/s
            # would cost more than the publishing.
            delay = t0 + i / rate - time.monotonic()
            if delay > 0.0005:
                await asyncio.sleep(delay)
            bus.publish(TOPIC, BenchSample(n=i, sent_ns=time.time_ns(), pad=PAD))
        elapsed, cpu = time.monotonic() - t0, _cpu_s() - cpu0
        # The PUB socket drops what it still holds when closed: let it reach the broker.
        await asyncio.sleep(1.0)
        await bus.close()
        return {"sent": n, "seconds": elapsed, "cpu_s": cpu}

    return asyncio.run(main())


# --------------------------------------------------------------------------- orchestration

@dataclass
class Child:
    name: str
    proc: asyncio.subprocess.Process
    log: Path

    def tail(self, lines: int = 15) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    async def line(self, timeout: float) -> dict[str, Any]:
        """The next JSON line on its stdout."""
        assert self.proc.stdout is not None
        raw = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        if not raw:
            await self.proc.wait()
            raise RuntimeError(f"{self.name} exited ({self.proc.returncode}):\n{self.tail()}")
        data: dict[str, Any] = json.loads(raw)
        return data

    async def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        await stop_process(self.proc, timeout)


async def start_process(runtime: Path, name: str, *argv: str, piped: bool = False,
                 stdin: bool = False) -> Child:
    env = dict(os.environ, EDGE_RUNTIME_DIR=str(runtime), PYTHONUNBUFFERED="1")
    env.pop("NOTIFY_SOCKET", None)
    path = runtime / f"{name}.log"
    log: IO[bytes] = open(path, "ab")  # noqa: ASYNC230, SIM115 - a local file, once
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", *argv,
            stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE if piped else log, stderr=log, env=env)
    finally:
        log.close()
    return Child(name, proc, path)


@dataclass
class _Readback:
    frames: int
    bytes: int
    files: int
    catalog_frames: int
    bus_found: int
    bus_duplicates: int
    bus_bytes: int


def _read_back(recordings: Path, cameras: int, bus_sent: int) -> _Readback:
    """Count what the files hold: MP4 packets by PyAV's demuxer, bench messages by the
    bus log reader; the catalog's frame counts beside, to check them."""
    import av
    import msgpack

    from edge.recorder.bus_log import read
    from edge.recorder.catalog import Catalog
    from edge.recorder.layout import BUS_DIR, CATALOG_FILE, VIDEO_DIR

    frames = size = files = 0
    for i in range(cameras):
        for path in sorted((recordings / VIDEO_DIR / bench_camera_id(i) / "main").glob("*.mp4")):
            with av.open(str(path)) as container:
                frames += sum(1 for p in container.demux(video=0) if p.size)
            size += path.stat().st_size
            files += 1
    catalog_frames = 0
    if (recordings / CATALOG_FILE).exists():
        with Catalog(recordings / CATALOG_FILE) as catalog:
            catalog_frames = sum(s.frames for i in range(cameras)
                                 for s in catalog.segments(bench_camera_id(i), "main"))
    seen: set[int] = set()
    duplicates = bus_bytes = 0
    for path in sorted((recordings / BUS_DIR).glob("*.mcap")):
        bus_bytes += path.stat().st_size
        for message in read(path, topics=[TOPIC]):
            n = msgpack.unpackb(message.frames[2])["n"]
            if n in seen:
                duplicates += 1
            elif 0 <= n < bus_sent:
                seen.add(n)
    return _Readback(frames, size, files, catalog_frames, len(seen), duplicates, bus_bytes)


def recorder_config(runtime: Path, recordings: Path, cameras: int, segment_seconds: float) -> Path:
    lines = ['vehicle = "bench"', "[bus]", f"runtime_dir = {json.dumps(str(runtime))}"]
    for i in range(cameras):
        cid = bench_camera_id(i)
        # The recorder reads the media plane only; this URL is never opened.
        lines += ["[[cameras]]", f'id = "{cid}"', f'name = "Bench {i + 1}"',
                  f'main = "rtsp://127.0.0.1:9/{cid}/main"']
    lines += ["[recorder]", "enabled = true", f"path = {json.dumps(str(recordings))}",
              f"segment_seconds = {segment_seconds}"]
    path = runtime / "vehicle.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


async def _drained(status: dict[str, Any], published: list[int], bus_target: int,
                   children: list[Child]) -> bool:
    """Wait until the recorder's status says it has taken every unit (one per stream is
    held back until the next, or the close) and at least `bus_target` bus messages."""
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    while time.monotonic() < deadline:
        check_alive(children)
        s = status.get("last")
        if s is not None:
            taken = {x.camera_id: x.units_written + x.units_dropped + x.units_skipped
                     for x in s.streams}
            if (all(taken.get(bench_camera_id(i), 0) >= n - 1 for i, n in enumerate(published))
                    and s.bus_messages >= bus_target):
                await asyncio.sleep(0.5)  # the bus thread's next wake-up writes what came
                return True
        await asyncio.sleep(0.2)
    return False


def check_alive(children: Sequence[Child]) -> None:
    """RuntimeError with the child's last output if any child has exited."""
    for child in children:
        if child.proc.returncode is not None:
            raise RuntimeError(f"{child.name} exited ({child.proc.returncode}):\n"
                               f"{child.tail()}")


async def _run(cameras: int, seconds: float, bus_rate: float, bus_seconds: float,
               segment_seconds: float, keep: bool) -> dict[str, Any]:
    from edge.bus import topics
    from edge.bus.client import BusClient
    from edge.bus.messages import RecorderStatus

    runtime = Path(tempfile.mkdtemp(prefix="edge-brec-"))
    recordings = runtime / "recordings"
    me = "edge.bench.record"
    children: list[Child] = []
    watcher: BusClient | None = None
    watch: asyncio.Task[None] | None = None
    status: dict[str, Any] = {}
    try:
        base = await start_process(runtime, "baseline", me, "_baseline", "--cameras", str(cameras),
                            "--seconds", str(seconds), "--out", str(runtime / "baseline"),
                            piped=True)
        baseline = await base.line(START_TIMEOUT_S + seconds + 30)
        await base.proc.wait()
        base_read = await asyncio.to_thread(_count_packets, runtime / "baseline")
        base_bytes = sum(p.stat().st_size for p in (runtime / "baseline").glob("*.mp4"))
        shutil.rmtree(runtime / "baseline", ignore_errors=True)

        config = recorder_config(runtime, recordings, cameras, segment_seconds)
        broker = await start_process(runtime, "bus", "edge", "run", "bus", "--config", str(config))
        children.append(broker)
        feeder = await start_process(runtime, "feeder", me, "_feed", "--cameras", str(cameras),
                              "--runtime", str(runtime), piped=True, stdin=True)
        children.append(feeder)
        recorder = await start_process(runtime, "recorder", "edge", "run", "recorder", "--config",
                                str(config))
        children.append(recorder)
        watcher = BusClient(bench_endpoints(runtime), source="bench-record-watch")
        sub = watcher.subscribe(topics.RECORDER_STATUS)

        async def keep_status() -> None:
            async for env in sub:
                if isinstance(env.message, RecorderStatus):
                    status["last"] = env.message

        watch = asyncio.create_task(keep_status())
        ready = asyncio.create_task(feeder.line(START_TIMEOUT_S))
        while not ready.done():
            await asyncio.wait({ready}, timeout=0.5)
            if not ready.done():
                check_alive([broker, recorder])
        ready.result()
        pid = recorder.proc.pid
        # Subscribed, nothing flowing yet: what the recorder costs with no video at all.
        await asyncio.sleep(1.0)
        c0, t0 = proc_cpu_s(pid), time.monotonic()
        await asyncio.sleep(IDLE_S)
        idle_cpu, idle_s = proc_cpu_s(pid) - c0, time.monotonic() - t0
        assert feeder.proc.stdin is not None
        feeder.proc.stdin.write(b"go\n")
        await feeder.proc.stdin.drain()
        await asyncio.sleep(SETTLE_S)
        check_alive(children)

        (u0, s0), t0 = _proc_cpu(pid), time.monotonic()
        await asyncio.sleep(seconds)
        (u1, s1), video_s = _proc_cpu(pid), time.monotonic() - t0
        video_cpu, video_sys = u1 - u0 + s1 - s0, s1 - s0
        check_alive(children)

        bus: dict[str, Any] = {"sent": 0, "seconds": 0.0, "cpu_s": 0.0}
        bus_cpu = broker_cpu = 0.0
        bus_before = 0
        if bus_rate > 0:
            last = status.get("last")
            bus_before = last.bus_messages if last is not None else 0
            busfeed = await start_process(runtime, "bus-feeder", me, "_bus_feed", "--rate",
                                   str(bus_rate), "--seconds", str(bus_seconds), "--runtime",
                                   str(runtime), piped=True)
            await busfeed.line(START_TIMEOUT_S)
            c0, b0 = proc_cpu_s(pid), proc_cpu_s(broker.proc.pid)
            bus = await busfeed.line(bus_seconds + 60)
            bus_cpu = proc_cpu_s(pid) - c0
            broker_cpu = proc_cpu_s(broker.proc.pid) - b0
            await busfeed.stop()
            check_alive(children)

        await feeder.stop()
        fed = await feeder.line(5) if feeder.proc.returncode == 0 else None
        if fed is None:
            raise RuntimeError(f"the feeder failed:\n{feeder.tail()}")
        children.remove(feeder)
        drained = await _drained(status, fed["published"], bus_before + bus["sent"], children)
        last_status = status.get("last")
        await recorder.stop()
        children.remove(recorder)
        if recorder.proc.returncode != 0:
            raise RuntimeError(f"the recorder exited {recorder.proc.returncode}:\n"
                               f"{recorder.tail()}")
        back = await asyncio.to_thread(_read_back, recordings, cameras, bus["sent"])
    finally:
        if watch is not None:
            watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watch
        if watcher is not None:
            await watcher.close()
        for child in reversed(children):
            await child.stop()
        if keep:
            print(f"(files kept in {runtime})")
        else:
            shutil.rmtree(runtime, ignore_errors=True)

    stream_min = cameras * seconds / 60
    published = sum(fed["published"])
    base_per = baseline["cpu_s"] / (cameras * baseline["seconds"] / 60)
    rec_per = video_cpu / (cameras * video_s / 60)
    ratio = rec_per / base_per if base_per > 0 else float("inf")
    frames_lost = published - back.frames
    bus_lost = bus["sent"] - back.bus_found
    achieved = bus["sent"] / bus["seconds"] if bus["seconds"] else 0.0
    bus_pct = 100 * bus_cpu / bus["seconds"] if bus["seconds"] else 0.0
    video_pct = 100 * video_cpu / video_s
    per_msg_us = (1e6 * (bus_cpu - video_cpu / video_s * bus["seconds"]) / bus["sent"]
                  if bus["sent"] else 0.0)
    streams = last_status.streams if last_status is not None else []
    dropped = sum(s.units_dropped for s in streams)
    skipped = sum(s.units_skipped for s in streams)
    return {
        "bench": "record",
        "cameras": cameras,
        "seconds": seconds,
        "ratio": round(ratio, 3),
        "frames_lost": frames_lost,
        "bus_messages_lost": bus_lost,
        "baseline_cpu_s_per_stream_min": round(base_per, 4),
        "recorder_cpu_s_per_stream_min": round(rec_per, 4),
        "baseline_cpu_pct": round(100 * baseline["cpu_s"] / baseline["seconds"], 1),
        "recorder_cpu_pct": round(video_pct, 1),
        "baseline_sys_pct": round(100 * baseline["sys_s"] / baseline["seconds"], 1),
        "recorder_sys_pct": round(100 * video_sys / video_s, 1),
        "recorder_idle_cpu_pct": round(100 * idle_cpu / idle_s, 1),
        "ratio_without_idle": round((video_cpu / video_s - idle_cpu / idle_s) * 60 / cameras
                                    / base_per, 3) if base_per > 0 else None,
        "frames_published": published,
        "frames_in_files": back.frames,
        "catalog_frames": back.catalog_frames,
        "catalog_agrees": back.catalog_frames == back.frames,
        "segment_files": back.files,
        "baseline_frames_lost": baseline["published"] - base_read,
        "recorder_units_dropped": dropped,
        "recorder_units_skipped": skipped,
        "drained": drained,
        "recorder_write_mb_s": round(back.bytes / 1e6 / fed["seconds"], 3),
        "baseline_write_mb_s": round(base_bytes / 1e6 / baseline["seconds"], 3),
        "feeder_cpu_pct": round(100 * fed["cpu_s"] / fed["seconds"], 1),
        "feeder_late_max_ms": fed["late_max_ms"],
        "baseline_late_max_ms": baseline["late_max_ms"],
        "bus_rate": bus_rate,
        "bus_rate_achieved": round(achieved),
        "bus_sent": bus["sent"],
        "bus_recorded": back.bus_found,
        "bus_duplicates": back.bus_duplicates,
        "bus_write_mb_s": round(back.bus_bytes / 1e6 / bus["seconds"], 3) if bus["seconds"]
        else 0.0,
        "recorder_cpu_pct_with_bus": round(bus_pct, 1),
        "recorder_us_per_bus_message": round(per_msg_us, 2),
        "broker_cpu_pct_with_bus": round(100 * broker_cpu / bus["seconds"], 1)
        if bus["seconds"] else 0.0,
        "stream_minutes": round(stream_min, 2),
        "target_ratio": TARGET_RATIO,
        "ok": (ratio <= TARGET_RATIO and frames_lost == 0 and bus_lost == 0
               and (bus_rate == 0 or achieved >= 0.95 * bus_rate)),
    }


def _count_packets(directory: Path) -> int:
    import av

    total = 0
    for path in sorted(directory.glob("*.mp4")):
        with av.open(str(path)) as container:
            total += sum(1 for p in container.demux(video=0) if p.size)
    return total


def print_table(r: dict[str, Any]) -> None:
    def row(name: str, a: object, b: object, note: str = "") -> None:
        print(f"{name:38} {a!s:>16} {b!s:>16}  {note}".rstrip())

    n = r["cameras"]
    row("measure", "baseline (PyAV)", "edge recorder")
    row("CPU s per stream-minute", f'{r["baseline_cpu_s_per_stream_min"]:.4f}',
        f'{r["recorder_cpu_s_per_stream_min"]:.4f}')
    row(f"CPU % of one core, {n} streams", r["baseline_cpu_pct"], r["recorder_cpu_pct"])
    row("  of which system (kernel) %", r["baseline_sys_pct"], r["recorder_sys_pct"])
    row("recorder idle: subscribed, no video %", "", r["recorder_idle_cpu_pct"],
        f'ratio {r["ratio_without_idle"]} without it')
    row("write MB/s (video)", f'{r["baseline_write_mb_s"]:.2f}',
        f'{r["recorder_write_mb_s"]:.2f}')
    row("frames published / in the files", "",
        f'{r["frames_published"]}/{r["frames_in_files"]}',
        f'catalog {r["catalog_frames"]} ({"agrees" if r["catalog_agrees"] else "DIFFERS"}), '
        f'{r["segment_files"]} files')
    row("frames lost", r["baseline_frames_lost"], r["frames_lost"],
        f'recorder queue drops {r["recorder_units_dropped"]}, '
        f'skipped {r["recorder_units_skipped"]}')
    ok = r["ratio"] <= TARGET_RATIO
    row("ratio recorder/baseline", "", f'{r["ratio"]:.3f}',
        f"target <= {TARGET_RATIO:g}: {'ok' if ok else 'MISSED'}")
    if r["bus_sent"]:
        rate_ok = r["bus_rate_achieved"] >= 0.95 * r["bus_rate"]
        row(f'bus at {r["bus_rate"]:,.0f} msg/s: sent/in MCAP', "",
            f'{r["bus_sent"]}/{r["bus_recorded"]}',
            f'published at {r["bus_rate_achieved"]:,} msg/s'
            + ("" if rate_ok else " (publisher fell behind)"))
        row("bus messages lost", "", r["bus_messages_lost"],
            f'duplicates {r["bus_duplicates"]}')
        row("recorder CPU %, video + bus", "", r["recorder_cpu_pct_with_bus"],
            f'~{r["recorder_us_per_bus_message"]:.1f} us of CPU per bus message')
        row("write MB/s (bus log)", "", f'{r["bus_write_mb_s"]:.2f}')
        row("broker CPU %, video + bus", "", r["broker_cpu_pct_with_bus"], "not in the ratio")
    row("feeder CPU %, late max ms", f'-, {r["baseline_late_max_ms"]}',
        f'{r["feeder_cpu_pct"]}, {r["feeder_late_max_ms"]}', "not in the ratio")
    print(f"({n} cameras x {MAIN[0]}x{MAIN[1]} {FPS} fps H.264 ~{BITRATE // 1000} kbit/s over "
          f"the media plane; CPU = user+sys of the process over {r['seconds']:g} s of video "
          f"after {SETTLE_S:g} s settling)")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("record", help="the recorder service against a bare PyAV remux",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cameras", type=int, default=4, help="simulated 720p30 cameras (default 4)")
    p.add_argument("--seconds", type=float, default=30.0,
                   help="measured seconds of video, each side (default 30)")
    p.add_argument("--bus-rate", type=float, default=float(TARGET_BUS_RATE),
                   help=f"bus messages/s in the bus phase; 0 skips it (default "
                        f"{TARGET_BUS_RATE})")
    p.add_argument("--bus-seconds", type=float, default=10.0,
                   help="length of the bus phase (default 10)")
    p.add_argument("--segment-seconds", type=float, default=60.0,
                   help="[recorder] segment_seconds of the run (default 60, as shipped)")
    p.add_argument("--keep", action="store_true", help="keep the recordings and logs")
    p.set_defaults(func=cmd_bench_record)


def cmd_bench_record(args: argparse.Namespace) -> int:
    from edge.cli import OperatorError

    if args.cameras < 1:
        raise OperatorError(f"--cameras must be at least 1, got {args.cameras}")
    for name in ("seconds", "bus_seconds", "segment_seconds"):
        if not getattr(args, name) > 0:
            raise OperatorError(f"--{name.replace('_', '-')} must be more than 0, "
                                f"got {getattr(args, name):g}")
    if args.bus_rate < 0:
        raise OperatorError(f"--bus-rate must be 0 or more, got {args.bus_rate:g}")
    try:
        result = asyncio.run(_run(args.cameras, args.seconds, args.bus_rate, args.bus_seconds,
                                  args.segment_seconds, args.keep))
    except (RuntimeError, TimeoutError) as e:
        raise OperatorError(f"bench record: {e or 'timed out'}") from None
    print_table(result)
    print(json.dumps(result), flush=True)
    return 0


# --------------------------------------------------------------------------- child entry points

def _main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(prog="python -m edge.bench.record")
    p.add_argument("role", choices=("_baseline", "_feed", "_bus_feed"))
    p.add_argument("--cameras", type=int, default=1)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--rate", type=float, default=1000.0)
    p.add_argument("--out", type=Path)
    p.add_argument("--runtime", type=Path)
    args = p.parse_args(argv)
    if args.role == "_baseline":
        result = _baseline(args.cameras, args.seconds, args.out)
    elif args.role == "_feed":
        result = _feed(args.runtime, args.cameras)
    else:
        result = _bus_feed(args.runtime, args.rate, args.seconds)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    _main(sys.argv[1:])
