"""`edge bench replay --cameras N --minutes M`: seek-to-first-frame through the replay's
WHEP uplink, and the replay's CPU at 1x against bare PyAV demuxing of the same files.

- **session**: N cameras of pre-encoded units (720p30 H.264, 1 s GOP) fed to the real
  recorder for M minutes inside a named session, with the pieces of
  :mod:`edge.bench.record` (its config, feeder and children); or `--session ID`
  with `--config` for one already recorded; or, with `--synthetic`, the same units
  written in seconds by the recorder's own writers and catalog on a synthetic clock
  (:mod:`edge.bench.synthetic_session`), so that 16 x 60 min does not take an hour.
  Seeks depend on the GOP and segment layout, which are the recorder's, not on how
  long the recording took.
- **baseline** (a child, first): every segment file of the session's streams demuxed
  by PyAV, one thread per stream, each packet at its recorded time at 1x (the replay's
  pacing), nothing else: the least any Python replay can do. Its CPU (user+sys of the
  process) and the packets it found in the session's range.
- **replay**: ``edge replay SESSION --headless --paused --uplink`` as a child, the
  real command with its real uplink (a grandchild, not counted). One aiortc WHEP
  viewer (:mod:`edge.bench.whep_viewer`) plays the first camera.
  *Seeks*: paused, at random positions (seeded); each is the time from sending the
  `replay.command` seek to the viewer's first decoded frame after it.
  *1x*: from the start to the end at 1x (or over the first `--play-seconds` only:
  a synthetic hour would take an hour; the table and JSON say which); the replay
  process's CPU over it, and a media-plane subscriber per stream in this process
  counting the units of the range played. Frames lost = packets the baseline found in
  that range minus units received (never negative per stream). The baseline plays the
  same range.

Machines here are shared: the ratio is the figure to compare, not the absolute times.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import resource
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from edge.bench.record import (
    START_TIMEOUT_S,
    bench_camera_id,
    bench_endpoints,
    proc_cpu_s,
    recorder_config,
    start_process,
)

TARGET_SEEK_P95_MS = 200.0
TARGET_RATIO = 1.3
SEEK_TIMEOUT_S = 5.0
QUIET_S = 0.3
DRAIN_TIMEOUT_S = 60.0
TICK_NS = 100_000 / 9
# A synthetic session's 1x phase, unless --play-seconds says otherwise.
SYNTHETIC_PLAY_S = 60.0
SYNTHETIC_SEGMENT_S = 60.0  # [recorder] segment_seconds as shipped
# Room left free beside a synthetic session, beyond its own size.
DISK_MARGIN = 1 << 30


def _pct(values: list[float], p: float) -> float | None:
    xs = sorted(values)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))] if xs else None


def _ms(values: list[float], p: float) -> float | None:
    found = _pct(values, p)
    return None if found is None else round(found, 1)


# --------------------------------------------------------------------------- baseline process

def _baseline(catalog: Path, start_ns: int, end_ns: int) -> dict[str, Any]:
    import av

    from edge.recorder.catalog import Catalog

    with Catalog(catalog) as cat:
        rows = cat.segments(start_ns=start_ns, end_ns=end_ns + 1)
    streams: dict[str, list[Any]] = {}
    for row in rows:
        streams.setdefault(f"{row.camera}/{row.stream}", []).append(row)
    found = dict.fromkeys(streams, 0)
    t0 = time.monotonic()

    def play(name: str) -> None:
        for row in sorted(streams[name], key=lambda r: r.start_ns):
            with av.open(str(row.path)) as container:
                stream = container.streams.video[0]
                tb = stream.time_base
                assert tb is not None
                for packet in container.demux(stream):
                    if packet.dts is None:
                        continue
                    at = row.start_ns + int(packet.dts * tb * 1_000_000_000)
                    if at > end_ns:
                        return
                    delay = t0 + (at - start_ns) / 1e9 - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                    if at >= start_ns:
                        found[name] += 1

    r0 = resource.getrusage(resource.RUSAGE_SELF)
    threads = [threading.Thread(target=play, args=(n,)) for n in streams]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    return {"cpu_s": r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime,
            "seconds": time.monotonic() - t0, "found": found}


# --------------------------------------------------------------------------- recording

async def _record(runtime: Path, cameras: int, seconds: float) -> tuple[Path, int]:
    """A session of `cameras` fed streams, `seconds` long: (config, session id)."""
    from edge.bus import topics
    from edge.bus.client import BusClient, RequestError
    from edge.bus.messages import RecordCommand, Reply
    from edge.recorder.catalog import Catalog
    from edge.recorder.layout import CATALOG_FILE

    recordings = runtime / "recordings"
    config = recorder_config(runtime, recordings, cameras, 60.0)
    children = []
    bus: BusClient | None = None
    try:
        children.append(await start_process(runtime, "bus", "edge", "run", "bus", "--config",
                                     str(config)))
        feeder = await start_process(runtime, "feeder", "edge.bench.record", "_feed", "--cameras",
                              str(cameras), "--runtime", str(runtime), piped=True, stdin=True)
        children.append(feeder)
        recorder = await start_process(runtime, "recorder", "edge", "run", "recorder", "--config",
                                str(config))
        children.append(recorder)
        await feeder.line(START_TIMEOUT_S)
        bus = BusClient(bench_endpoints(runtime), source="bench-replay")

        async def ask(action: str) -> dict[str, Any]:
            deadline = time.monotonic() + START_TIMEOUT_S
            while True:
                try:
                    reply = (await bus.request(topics.RECORDER_SERVICE,
                                               RecordCommand(action=action, name="bench"))).message
                    if isinstance(reply, Reply) and reply.status == "accepted":
                        return dict(reply.data)
                    problem = str(reply)
                except RequestError as e:
                    problem = str(e)
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the recorder refused {action}: {problem}")
                await asyncio.sleep(0.5)

        announcer = asyncio.create_task(_announce(bus, runtime, cameras))
        await asyncio.sleep(1.5)  # announced before the session: its state at the start
        session = int((await ask("start"))["session_id"])
        assert feeder.proc.stdin is not None
        feeder.proc.stdin.write(b"go\n")
        await feeder.proc.stdin.drain()
        await asyncio.sleep(seconds)
        await feeder.stop()
        await asyncio.sleep(1.0)  # the last units reach the recorder
        end_ns = int((await ask("stop"))["end_ns"])
        announcer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await announcer

        def written() -> bool:
            with Catalog(recordings / CATALOG_FILE) as cat:
                return all(max((s.end_ns for s in cat.segments(bench_camera_id(i), "main")),
                               default=0) >= end_ns - 2_000_000_000 for i in range(cameras))

        await recorder.stop()  # closes its segments: everything is indexed
        if not await asyncio.to_thread(written):
            raise RuntimeError(f"the recorder did not index every stream:\n{recorder.tail()}")
        return config, session
    finally:
        if bus is not None:
            await bus.close()
        for child in reversed(children):
            await child.stop()


async def _announce(bus: Any, runtime: Path, cameras: int) -> None:
    """What each camera's service would say on the bus (the feeder has no camera service):
    live, and where its stream is, once a second, so the session holds them."""
    from edge.bench.record import FPS, MAIN
    from edge.bus import topics
    from edge.bus.messages import CameraStatus, CameraStream

    endpoints = bench_endpoints(runtime)
    while True:
        for i in range(cameras):
            cid = bench_camera_id(i)
            bus.publish(topics.cam_status(cid), CameraStatus(
                camera_id=cid, name=cid, state="live", codec="h264", width=MAIN[0],
                height=MAIN[1], fps=float(FPS), gop=FPS, last_frame_age_s=0.0))
            bus.publish(topics.cam_stream(cid, "main"), CameraStream(
                camera_id=cid, profile="main", endpoint=endpoints.media(cid, "main"),
                codec="h264", width=MAIN[0], height=MAIN[1], fps=float(FPS)))
        await asyncio.sleep(1.0)


# --------------------------------------------------------------------------- the replay

_BUS_DIR = re.compile(r"replay bus and media plane in (\S+)")
_UPLINK = re.compile(r"uplink \(WHEP and the viewer page\): (\S+?)/? token in (\S+)")


async def _announced(proc: asyncio.subprocess.Process) -> tuple[Path, str, str]:
    assert proc.stderr is not None
    runtime: Path | None = None
    seen: list[str] = []
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        left = deadline - time.monotonic()
        line = (await asyncio.wait_for(proc.stderr.readline(), max(left, 0.1))).decode(
            errors="replace")
        if not line:
            raise RuntimeError("edge replay ended early:\n" + "".join(seen[-10:]))
        seen.append(line)
        if m := _BUS_DIR.search(line):
            runtime = Path(m.group(1))
        if (m := _UPLINK.search(line)) and runtime is not None:
            token = Path(m.group(2)).read_text().strip()  # noqa: ASYNC240 - tiny, once
            return runtime, m.group(1), token


async def _measure(config: Path, session: int, start_ns: int, end_ns: int, play_end_ns: int,
                   port: int, seeks: int, seed: int) -> dict[str, Any]:
    import aiohttp
    import zmq

    from edge.bench.whep_viewer import WhepRefused, WhepViewer
    from edge.bus import topics
    from edge.bus.client import BusClient
    from edge.bus.endpoints import Endpoints
    from edge.bus.messages import ReplayCommand, ReplayStatus, Reply
    from edge.media.subscriber import MediaSubscriber

    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "edge", "replay", str(session), "--config", str(config),
        "--headless", "--paused", "--uplink", f"127.0.0.1:{port}", env=env,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    bus: BusClient | None = None
    viewer: WhepViewer | None = None
    subs: list[MediaSubscriber] = []
    tasks: list[asyncio.Task[None]] = []
    try:
        runtime, url, token = await _announced(proc)
        endpoints = Endpoints(pub=f"ipc://{runtime}/bus-pub.sock",
                              sub=f"ipc://{runtime}/bus-sub.sock",
                              router=f"ipc://{runtime}/bus-router.sock", runtime_dir=runtime,
                              request_timeout_s=5.0)
        bus = BusClient(endpoints, source="bench-replay")

        async def command(**fields: Any) -> ReplayStatus:
            reply = (await bus.request(topics.REPLAY_SERVICE, ReplayCommand(**fields))).message
            if not (isinstance(reply, Reply) and reply.status == "accepted"):
                raise RuntimeError(f"the replay refused {fields}: {reply}")
            return ReplayStatus.from_body(reply.data)

        status = await command(action="pause")
        cameras = sorted(status.cameras)
        frame_times: list[float] = []
        framed = asyncio.Event()

        def on_frame(_frame: object) -> None:
            frame_times.append(time.monotonic())
            framed.set()

        await command(action="play")
        deadline = time.monotonic() + START_TIMEOUT_S
        refused = ""
        async with aiohttp.ClientSession() as http:
            while viewer is None:
                v = WhepViewer(f"{url}/whep/{cameras[0].split('/')[0]}", token, http=http,
                               on_frame=on_frame, marker_frames=True)
                try:
                    await v.start()
                    viewer = v
                    break
                except WhepRefused as e:  # until the uplink has heard the replayed camera
                    refused = str(e)
                await v.close()
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the replay uplink refused a viewer: {refused}")
                await asyncio.sleep(0.3)
            await viewer.wait_frames(5, START_TIMEOUT_S)
            await command(action="pause")

            # Where a seek's time goes: the reply to the request, and the viewed camera's
            # first unit on the replay's media plane (the replay's part; the rest to the
            # decoded frame is the uplink's and the viewer's).
            viewed, viewed_stream = cameras[0].split("/")
            probe = MediaSubscriber(bus.sync_ctx, endpoints.media(viewed, viewed_stream))
            subs.append(probe)
            unit_times: list[float] = []

            async def watch(sub: MediaSubscriber) -> None:
                while True:
                    await sub.recv()
                    unit_times.append(time.monotonic())

            tasks.append(asyncio.create_task(watch(probe)))
            await asyncio.sleep(1.0)  # the subscription reaches the publisher

            # ---- seeks, paused: the first frame after each request
            rng = random.Random(seed)
            seek_ms: list[float] = []
            unit_ms: list[float] = []
            reply_ms: list[float] = []
            failed = 0
            for _ in range(seeks):
                target = rng.randrange(start_ns, max(start_ns + 1, end_ns - 1_000_000_000))
                while True:  # quiet: nothing in flight from the last seek
                    n, u = len(frame_times), len(unit_times)
                    await asyncio.sleep(QUIET_S)
                    if len(frame_times) == n and len(unit_times) == u:
                        break
                framed.clear()
                t0 = time.monotonic()
                await command(action="seek", time_ns=target)
                reply_ms.append((time.monotonic() - t0) * 1000)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(framed.wait(), SEEK_TIMEOUT_S)
                if len(frame_times) > n:
                    seek_ms.append((frame_times[n] - t0) * 1000)
                else:
                    failed += 1
                if len(unit_times) > u:
                    unit_ms.append((unit_times[u] - t0) * 1000)

            # ---- 1x from the start to the end: the replay's CPU and its units
            ctx: zmq.Context[zmq.Socket[bytes]] = bus.sync_ctx
            received = dict.fromkeys(cameras, 0)

            async def count(name: str, sub: MediaSubscriber) -> None:
                while True:
                    unit = await sub.recv()
                    if unit.pts is None:
                        continue
                    at = unit.pts * TICK_NS
                    # The replay's pts is the recorded time floored to a 90 kHz tick: a
                    # unit received at the very start may read up to a tick before it.
                    if start_ns - TICK_NS < at <= play_end_ns:
                        received[name] += 1

            for name in cameras:
                camera, stream = name.split("/")
                sub = MediaSubscriber(ctx, endpoints.media(camera, stream))
                subs.append(sub)
                tasks.append(asyncio.create_task(count(name, sub)))
            await asyncio.sleep(1.0)  # subscriptions reach the publishers
            await command(action="seek", time_ns=start_ns)
            await asyncio.sleep(QUIET_S)
            cpu0, t0 = proc_cpu_s(proc.pid), time.monotonic()
            status = await command(action="play")
            deadline = t0 + (play_end_ns - start_ns) / 1e9 + DRAIN_TIMEOUT_S
            while (status.state != "ended" and status.position_ns < play_end_ns
                   and time.monotonic() < deadline):
                # A request a second: little of the replay's CPU is ours.
                await asyncio.sleep(1.0)
                status = await command(action="speed", speed=1.0)
            reached = status.state == "ended" or status.position_ns >= play_end_ns
            if status.state != "ended":
                status = await command(action="pause")  # the part to play is played
            cpu, played = proc_cpu_s(proc.pid) - cpu0, time.monotonic() - t0
            # The last units reach the subscribers: until none has come for a second (a
            # loaded machine delivers the tail late; a fixed second once counted one lost).
            settle_by, seen = time.monotonic() + DRAIN_TIMEOUT_S, -1
            while seen != (now_seen := sum(received.values())) \
                    and time.monotonic() < settle_by:
                seen = now_seen
                await asyncio.sleep(1.0)
            viewer_frames = viewer.stats.frames
            await viewer.close()
            viewer = None
        return {"seek_ms": seek_ms, "unit_ms": unit_ms, "reply_ms": reply_ms,
                "seek_failed": failed, "cpu_s": cpu, "seconds": played,
                "received": received, "viewer_frames": viewer_frames, "ended": reached}
    finally:
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for sub in subs:
            sub.close()
        if viewer is not None:
            await viewer.close()
        if bus is not None:
            await bus.close()
        if proc.returncode is None:
            proc.terminate()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.communicate(), 20)
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def _run(cameras: int, minutes: float, session: int | None, config: Path | None,
               seeks: int, seed: int, keep: bool, synthetic: bool = False,
               play_seconds: float | None = None) -> dict[str, Any]:
    from edge.cli.record_cmd import find_session, open_catalog
    from edge.config.loader import load_config
    from edge.recorder.layout import CATALOG_FILE, recordings_dir

    runtime = Path(tempfile.mkdtemp(prefix="edge-brep-"))
    written: dict[str, Any] | None = None
    source = "synthetic" if synthetic else "given" if session is not None else "recorded"
    try:
        if synthetic:
            config, session, written = await _synthetic(runtime, cameras, minutes)
        elif session is None:
            config, session = await _record(runtime, cameras, minutes * 60)
        assert config is not None and session is not None
        vehicle = load_config(config)
        root = recordings_dir(vehicle.recorder, config.resolve().parent)
        with open_catalog(root) as cat:
            found = find_session(cat, str(session))
            start_ns = found.start_ns
            end_ns = found.end_ns if found.end_ns is not None else time.time_ns()
        play_end_ns = end_ns
        if play_seconds is not None:
            play_end_ns = min(end_ns, start_ns + round(play_seconds * 1e9))
        base = await start_process(runtime, "baseline", "edge.bench.replay", "_baseline",
                                   "--catalog", str(root / CATALOG_FILE), "--start",
                                   str(start_ns), "--end", str(play_end_ns), piped=True)
        baseline = await base.line((play_end_ns - start_ns) / 1e9 + START_TIMEOUT_S)
        await base.proc.wait()
        measured = await _measure(config, session, start_ns, end_ns, play_end_ns,
                                  _free_port(), seeks, seed)
    finally:
        if keep:
            print(f"(files kept in {runtime})")
        else:
            shutil.rmtree(runtime, ignore_errors=True)
    streams = len(baseline["found"])
    stream_min = max(streams, 1) * measured["seconds"] / 60
    base_per = baseline["cpu_s"] / (max(streams, 1) * baseline["seconds"] / 60)
    replay_per = measured["cpu_s"] / stream_min
    ratio = replay_per / base_per if base_per > 0 else float("inf")
    lost = sum(max(0, n - measured["received"].get(name, 0))
               for name, n in baseline["found"].items())
    p50, p95 = _pct(measured["seek_ms"], 50), _pct(measured["seek_ms"], 95)
    return {
        "bench": "replay", "cameras": streams, "minutes": round((end_ns - start_ns) / 6e10, 2),
        "session": session, "source": source, "synthetic": written is not None,
        # 1x (CPU, frames lost) is measured over the first `played_s` of the session only.
        "played_s": round((play_end_ns - start_ns) / 1e9, 1),
        "played_whole_session": play_end_ns == end_ns,
        "seek_p50_ms": round(p50, 1) if p50 is not None else None,
        "seek_p95_ms": round(p95, 1) if p95 is not None else None,
        "seek_max_ms": round(max(measured["seek_ms"]), 1) if measured["seek_ms"] else None,
        "seeks": len(measured["seek_ms"]), "seeks_without_frame": measured["seek_failed"],
        "seek_unit_p50_ms": _ms(measured["unit_ms"], 50),
        "seek_unit_p95_ms": _ms(measured["unit_ms"], 95),
        "seek_reply_p50_ms": _ms(measured["reply_ms"], 50),
        "seek_reply_p95_ms": _ms(measured["reply_ms"], 95),
        "ratio": round(ratio, 3), "frames_lost": lost,
        "frames_in_files": sum(baseline["found"].values()),
        "frames_replayed": sum(measured["received"].values()),
        "viewer_frames": measured["viewer_frames"], "reached_end": measured["ended"],
        "baseline_cpu_s_per_stream_min": round(base_per, 4),
        "replay_cpu_s_per_stream_min": round(replay_per, 4),
        "baseline_cpu_pct": round(100 * baseline["cpu_s"] / baseline["seconds"], 1),
        "replay_cpu_pct": round(100 * measured["cpu_s"] / measured["seconds"], 1),
        "target_seek_p95_ms": TARGET_SEEK_P95_MS, "target_ratio": TARGET_RATIO,
        **(written or {}),
        "ok": (p95 is not None and p95 <= TARGET_SEEK_P95_MS and ratio <= TARGET_RATIO
               and lost == 0 and measured["seek_failed"] == 0),
    }


async def _synthetic(runtime: Path, cameras: int, minutes: float
                     ) -> tuple[Path, int, dict[str, Any]]:
    """A synthetic session of `cameras` x `minutes` in `runtime`: (config, session id, what
    was written, for the JSON)."""
    from edge.bench.record import BITRATE, FPS, MAIN
    from edge.bench.synthetic_session import LEAD_S, write_synthetic_session
    from edge.recorder.bus_log import BusLogError
    from edge.recorder.catalog import CatalogError
    from edge.recorder.mp4_segment import RecordingWriteError

    recordings = runtime / "recordings"
    config = recorder_config(runtime, recordings, cameras, SYNTHETIC_SEGMENT_S)
    need = round(cameras * (minutes * 60 + LEAD_S) * BITRATE / 8)
    free = shutil.disk_usage(runtime).free
    if free < need + DISK_MARGIN:
        raise RuntimeError(f"a synthetic session of {cameras} x {minutes:g} min needs about "
                           f"{need / 1e9:.1f} GB in {runtime.parent}, and "
                           f"{free / 1e9:.1f} GB is free")
    print(f"bench replay: writing a synthetic session, {cameras} cameras x {minutes:g} min "
          f"(about {need / 1e9:.1f} GB), into {recordings}", file=sys.stderr, flush=True)
    t0 = time.monotonic()
    try:
        # In the loop's own thread (nothing else runs yet): Ctrl-C stops the writing at
        # once, and the files go with the runtime dir.
        made = write_synthetic_session(recordings, cameras, minutes,
                                       segment_seconds=SYNTHETIC_SEGMENT_S)
    except (OSError, RecordingWriteError, BusLogError, CatalogError) as e:
        raise RuntimeError(f"cannot write the synthetic session: {e}") from None
    took = time.monotonic() - t0
    print(f"bench replay: written in {took:.1f} s: {made.segments} segments, "
          f"{made.bus_messages} bus messages, {made.bytes / 1e9:.2f} GB",
          file=sys.stderr, flush=True)
    return config, made.session_id, {
        "synthetic_write_s": round(took, 1), "synthetic_bytes": made.bytes,
        "synthetic_segments": made.segments, "synthetic_units": made.units,
        "synthetic_bus_logs": made.bus_logs, "synthetic_bus_messages": made.bus_messages,
        "synthetic_video": f"{MAIN[0]}x{MAIN[1]} {FPS} fps H.264 ~{BITRATE // 1000} kbit/s, "
                           f"GOP 1 s, {SYNTHETIC_SEGMENT_S:g} s segments",
    }


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def print_table(r: dict[str, Any]) -> None:
    rows = [
        ("cameras x minutes", f"{r['cameras']} x {r['minutes']:g} ({r['source']} session)"),
        ("seek -> first frame p50 (ms)", r["seek_p50_ms"]),
        (f"seek -> first frame p95 (ms, goal <= {TARGET_SEEK_P95_MS:g})", r["seek_p95_ms"]),
        ("seek -> first frame max (ms)", r["seek_max_ms"]),
        ("  seek -> its reply p50 / p95 (ms)",
         f"{r['seek_reply_p50_ms']} / {r['seek_reply_p95_ms']}"),
        ("  seek -> first unit on the replay's media plane p50 / p95 (ms)",
         f"{r['seek_unit_p50_ms']} / {r['seek_unit_p95_ms']}"),
        ("seeks measured / without a frame", f"{r['seeks']} / {r['seeks_without_frame']}"),
        ("1x part (CPU, frames) played over",
         f"the whole session, {r['played_s']:g} s" if r["played_whole_session"]
         else f"the first {r['played_s']:g} s only (--play-seconds)"),
        ("baseline CPU (bare PyAV demux, % of a core)", r["baseline_cpu_pct"]),
        ("replay CPU at 1x (% of a core)", r["replay_cpu_pct"]),
        ("baseline CPU s per stream-minute", r["baseline_cpu_s_per_stream_min"]),
        ("replay CPU s per stream-minute", r["replay_cpu_s_per_stream_min"]),
        (f"ratio (goal <= {TARGET_RATIO:g})", r["ratio"]),
        ("frames in files / replayed / lost",
         f"{r['frames_in_files']} / {r['frames_replayed']} / {r['frames_lost']}"),
        ("frames the WHEP viewer decoded", r["viewer_frames"]),
    ]
    if r["synthetic"]:
        rows.append(("synthetic session written in (s)", r["synthetic_write_s"]))
        rows.append(("synthetic session size (GB) / segments / bus messages",
                     f"{r['synthetic_bytes'] / 1e9:.2f} / {r['synthetic_segments']} / "
                     f"{r['synthetic_bus_messages']}"))
        rows.append(("synthetic video", r["synthetic_video"]))
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("replay", help="seek-to-first-frame over WHEP and replay CPU vs PyAV",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cameras", type=int, default=2, help="fed 720p30 cameras (default 2)")
    p.add_argument("--minutes", type=float, default=1.0,
                   help="minutes recorded (default 1; recording takes that long, unless "
                        "--synthetic)")
    p.add_argument("--synthetic", action="store_true",
                   help="write the session synthetically (seconds, not --minutes of "
                        "recording) with the recorder's own writers, instead of recording it")
    p.add_argument("--play-seconds", type=float, default=None, metavar="S",
                   help="measure 1x CPU and frames lost over the session's first S seconds "
                        f"only (default: all of it; {SYNTHETIC_PLAY_S:g} with --synthetic)")
    p.add_argument("--session", help="a session already recorded (with --config) instead")
    p.add_argument("--config", type=Path, help="the vehicle config of --session")
    p.add_argument("--seeks", type=int, default=20, help="seeks measured (default 20)")
    p.add_argument("--seed", type=int, default=1, help="of the seek positions (default 1)")
    p.add_argument("--keep", action="store_true", help="keep the recordings and logs")
    p.set_defaults(func=cmd_bench_replay)


def cmd_bench_replay(args: argparse.Namespace) -> int:
    from edge.cli import OperatorError

    if args.cameras < 1:
        raise OperatorError(f"--cameras must be at least 1, got {args.cameras}")
    if not args.minutes > 0:
        raise OperatorError(f"--minutes must be more than 0, got {args.minutes:g}")
    if args.seeks < 1:
        raise OperatorError(f"--seeks must be at least 1, got {args.seeks}")
    if (args.session is None) != (args.config is None):
        raise OperatorError("--session and --config go together")
    if args.synthetic and args.session is not None:
        raise OperatorError("--synthetic writes a session of its own: not with --session")
    play_seconds = args.play_seconds
    if play_seconds is not None and not play_seconds > 0:
        raise OperatorError(f"--play-seconds must be more than 0, got {play_seconds:g}")
    if play_seconds is None and args.synthetic:
        play_seconds = SYNTHETIC_PLAY_S
    session = None
    if args.session is not None:
        if not args.session.isdigit():
            raise OperatorError(f"--session takes a session id, got {args.session!r}")
        session = int(args.session)
    try:
        result = asyncio.run(_run(args.cameras, args.minutes, session, args.config,
                                  args.seeks, args.seed, args.keep, args.synthetic,
                                  play_seconds))
    except (RuntimeError, TimeoutError) as e:
        raise OperatorError(f"bench replay: {e or 'timed out'}") from None
    print_table(result)
    print(json.dumps(result), flush=True)
    return 0


def _main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(prog="python -m edge.bench.replay")
    p.add_argument("role", choices=("_baseline",))
    p.add_argument("--catalog", type=Path, required=True)
    p.add_argument("--start", type=int, required=True)
    p.add_argument("--end", type=int, required=True)
    args = p.parse_args(argv)
    print(json.dumps(_baseline(args.catalog, args.start, args.end)), flush=True)


if __name__ == "__main__":
    _main(sys.argv[1:])
