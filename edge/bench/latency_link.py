"""`edge bench latency --link PROFILE`: the latency bench across an emulated WAN.

The same path as :mod:`edge.bench.latency` (a live-encoding simulated camera whose
pictures carry their render time, `edge run camera@bench`, `edge run uplink`, aiortc
WHEP viewers decoding every frame), with the link emulator
(:mod:`drivers.sim.link`) between the vehicle and the viewers:

- the emulator's world (a vehicle and a centre network namespace joined by one
  emulated WAN of the chosen profile) and its relay run in this process's event loop;
- the camera simulator, the camera service and the uplink run inside the vehicle's
  namespace (``nsenter``); the uplink listens on the vehicle's emulated address and
  its config has one ``[[links]]`` entry describing the emulated link (capacity,
  round trip, constrained for a geostationary hop), as a vehicle on that link has;
- the viewers run in one process inside the centre's namespace
  (:mod:`edge.bench.centre_viewers`), which reports every decoded frame back as a
  JSON line. A process rather than a thread that ``setns``-es: every socket the
  viewers open (aiohttp, aioice's candidates, DTLS) is then in the centre's namespace
  whatever thread or library opens it, and decoding has its own interpreter, so it
  never takes the GIL from the emulator's relay, whose timers are the link's timing;
- the bench reads the uplink's ``/api/state`` from inside the vehicle's namespace
  (a thread that joins it), so nothing of the measurement crosses the emulated link.

The broker runs in this process on ipc sockets, which are files and reach every
namespace. Render times are the host's wall clock, read by processes on the same
host, so glass-to-glass stays valid across namespaces.

The run starts when every viewer's POST has been answered and lasts ``--seconds``;
its figures are taken at its end, before the viewers leave:

- glass-to-glass: decoded minus rendered, for pictures rendered after the viewer
  showed its first (earlier ones arrive in the start's burst: that is the first frame);
- first frame: from the POST to the first decoded picture;
- frames never shown: holes in the RTP timestamps of the decoded frames (sent by the
  uplink, never decoded: lost and not repaired, or undecodable);
- freezes: gaps of more than 500 ms between decoded frames (up to the end of the run);
  freeze % is their total over the time from the first frame to the end, worst viewer;
- retransmissions per lost packet: the uplink's NACK repairs over the packets the
  emulator dropped from vehicle to centre, where the video goes (by loss, by a full
  modem queue or an outage: the viewer misses them all alike; a lost repair is lost
  there too and repaired again);
- queue drops: the emulated modem's drops from vehicle to centre (its buffer full).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import statistics
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

from drivers.sim.link import netns
from drivers.sim.link.emulator import Emulator
from drivers.sim.link.path import PathCounters
from drivers.sim.link.profile import PROFILES, LinkProfile
from drivers.sim.link.world import World, preflight
from edge.bench.centre_viewers import NACK_REPEAT_S
from edge.bench.latency import (
    CAMERA,
    FPS,
    STARTUP_TIMEOUT_S,
    STREAMS,
    TOKEN,
    BenchBus,
    Processes,
    _cpu_seconds,
    _pct,
)
from edge.runtime.processes import stop_process

#: a gap between two decoded frames longer than this is a freeze
FREEZE_MS = 500
RTP_CLOCK = 90_000
# The vehicle's namespace is new: nothing else listens there.
RTSP_PORT = 8554
HTTP_PORT = 8800
# The uplink's own rule for `auto`: a round trip this long is a geostationary hop.
GEO_RTT_MS = 300
# Crossing the link takes several round trips (TCP, the POST, ICE, DTLS): generous bounds
# that only keep a broken run from hanging.
POSTED_WITHIN_S = 60.0
VIEWERS_STOP_WITHIN_S = 20.0
STATE_TIMEOUT_S = 5.0


def cannot_run() -> str | None:
    """None if this process can build the emulated network, else one sentence why not."""
    why = preflight()
    if why is None and shutil.which("nsenter") is None:
        why = "needs nsenter (util-linux) to start processes inside the emulated namespaces"
    return why


def vehicle_config(runtime: Path, link: str, profile: LinkProfile, listen: str,
                   with_sub: bool, redundancy: str = "auto") -> Path:
    """The bench vehicle's config: one camera, the emulated link, the uplink on `listen`."""
    geo = profile.rtt_ms >= GEO_RTT_MS
    kind = "lte-private" if link.startswith("lte") else "satellite"
    path = runtime / "vehicle.toml"
    path.write_text(
        f'vehicle = "bench"\n[bus]\nruntime_dir = "{runtime}"\n'
        f'[[cameras]]\nid = "{CAMERA}"\nname = "Bench"\n'
        f'main = "rtsp://127.0.0.1:{RTSP_PORT}/{CAMERA}/main"\n'
        + (f'sub = "rtsp://127.0.0.1:{RTSP_PORT}/{CAMERA}/sub"\n' if with_sub else "")
        + f'[[links]]\nid = "{link}"\nname = "emulated {link}"\nkind = "{kind}"\n'
        f"capacity_kbps = {round(profile.up_mbps * 1000)}\nrtt_ms = {round(profile.rtt_ms)}\n"
        f"constrained = {'true' if geo else 'false'}\n"
        f'[uplink]\nlisten = "{listen}"\ntoken = {{ file = "uplink.token" }}\n'
        # NACK history covers two worst round trips; queueing adds to the link's own
        f"worst_rtt_ms = {max(1000, round(2 * profile.rtt_ms))}\n"
        f'redundancy = "{redundancy}"\n')
    return path


class VehicleApi:
    """The uplink's ``/api/state``, read from inside the vehicle's namespace.

    The uplink listens on the vehicle's emulated address, which exists only there; a
    short-lived thread joins the namespace for each request (``netns.call_in``).
    """

    def __init__(self, ns: str, url: str, token: str) -> None:
        self.ns = ns
        self.url = url
        self.token = token

    def _get(self) -> Any:
        # no proxy from the environment: the address is the vehicle's own
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        request = urllib.request.Request(f"{self.url}/api/state",
                                         headers={"Authorization": f"Bearer {self.token}"})
        with opener.open(request, timeout=STATE_TIMEOUT_S) as resp:
            return json.loads(resp.read())

    async def state(self) -> dict[str, Any]:
        state: dict[str, Any] = await asyncio.to_thread(netns.call_in, self.ns, self._get)
        return state


async def _wait_live(api: VehicleApi, procs: Processes, streams: set[str]) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        _check_running(procs)
        with contextlib.suppress(OSError, ValueError):
            state = await api.state()
            cams = [c for c in state["cameras"] if c["id"] == CAMERA]
            if cams and cams[0]["state"] == "live" and streams <= set(cams[0]["streams"]):
                return
        await asyncio.sleep(0.2)
    raise RuntimeError(f"the camera's {' and '.join(sorted(streams))} stream(s) did not become "
                       f"live at the uplink within {STARTUP_TIMEOUT_S:.0f} s:\n"
                       f"{procs.log_tail('uplink')}")


def _check_running(procs: Processes) -> None:
    for name, proc in procs.procs.items():
        if proc.returncode is not None:
            raise RuntimeError(f"{name} exited ({proc.returncode}):\n{procs.log_tail(name)}")


@dataclass
class Trace:
    """What one viewer of :mod:`edge.bench.centre_viewers` reported."""

    post_wall_ms: int | None = None
    location: str | None = None
    first_frame_ms: float | None = None
    states: list[tuple[int, str]] = field(default_factory=list)  # (wall ms, state)
    # (decoded at, wall ms; rendered at, wall ms or None if unreadable; RTP timestamp)
    frames: list[tuple[int, int | None, int | None]] = field(default_factory=list)
    end: dict[str, Any] | None = None

    @property
    def session_id(self) -> str:
        return (self.location or "").rstrip("/").rsplit("/", 1)[-1]


class CentreViewers:
    """The viewers' process in the centre's namespace, its lines read as they come."""

    def __init__(self, proc: asyncio.subprocess.Process, viewers: int, log: Path) -> None:
        self.proc = proc
        self.log = log
        self.traces = [Trace() for _ in range(viewers)]
        self.error: str | None = None
        self.warnings: list[str] = []
        self._posted = asyncio.Event()
        self._reader = asyncio.create_task(self._read(), name="centre-viewers")

    @classmethod
    async def start(cls, ns: str, url: str, token_file: Path, viewers: int,
                    stock_receiver: bool, log: Path, max_seconds: float) -> CentreViewers:
        argv = [*netns.exec_prefix(ns), sys.executable, "-m", "edge.bench.centre_viewers",
                url, str(token_file), "--viewers", str(viewers),
                "--max-seconds", f"{max_seconds:g}",
                *(["--stock-receiver"] if stock_receiver else [])]
        with open(log, "ab") as err:  # noqa: ASYNC230 - a local file, once
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=err)
        return cls(proc, viewers, log)

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for raw in self.proc.stdout:
            try:
                line = json.loads(raw)
            except ValueError:
                continue
            if isinstance(line, dict):
                # a line short of a field is skipped: the reader must keep draining the pipe,
                # or the viewers block on a full one
                with contextlib.suppress(KeyError, TypeError):
                    self._take(line)
        self._posted.set()  # the process is gone: nobody waits for posts any more

    def _take(self, line: dict[str, Any]) -> None:
        kind = line.get("kind")
        if kind == "error":
            self.error = str(line.get("error"))
            self._posted.set()
            return
        if kind == "warning":
            self.warnings.append(str(line.get("warning")))
            return
        index = line.get("v")
        if not isinstance(index, int) or not 0 <= index < len(self.traces):
            return
        trace = self.traces[index]
        if kind == "frame":
            trace.frames.append((line["t"], line["r"], line["ts"]))
        elif kind == "posted":
            trace.post_wall_ms, trace.location = line["post_wall_ms"], line["location"]
            if all(t.location is not None for t in self.traces):
                self._posted.set()
        elif kind == "state":
            trace.states.append((line["wall_ms"], line["state"]))
        elif kind == "first_frame":
            trace.first_frame_ms = line["ms"]
        elif kind == "end":
            trace.end = line

    def stderr_tail(self, lines: int = 5) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def check_running(self) -> None:
        if self.proc.returncode is not None:
            raise RuntimeError(f"the viewers' process exited ({self.proc.returncode}):\n"
                               f"{self.stderr_tail()}")

    async def wait_posted(self, within: float) -> None:
        try:
            await asyncio.wait_for(self._posted.wait(), within)
        except TimeoutError:
            raise RuntimeError(f"the viewers' POSTs were not answered within {within:g} s"
                               ) from None
        if self.error is not None:
            raise RuntimeError(f"viewers: {self.error}")
        if not all(t.location is not None for t in self.traces):
            await self.proc.wait()
            self.check_running()

    async def stop(self) -> None:
        """SIGTERM: each viewer reports its end and DELETEs its session (across the link)."""
        await stop_process(self.proc, VIEWERS_STOP_WITHIN_S)
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader


@dataclass
class Snapshot:
    """The run's end: the uplink's sessions, the link's counters, the uplink's CPU."""

    wall_ms: int
    seconds: float
    sessions: dict[str, dict[str, Any]]
    up: PathCounters
    down: PathCounters
    uplink_cpu_pct: float


async def run_link(link: str, viewers: int, seconds: float, stream: str,
                   stock_receiver: bool = False, redundancy: str = "auto") -> dict[str, Any]:
    profile = PROFILES[link]
    async with World([(link, profile)]) as world:
        emulator = Emulator(world)
        emulator.start()
        try:
            traces, snap = await _measure(world, emulator, link, profile, viewers, seconds,
                                          stream, stock_receiver, redundancy)
        finally:
            emulator.stop()
    result = _result(link, profile, emulator.seed, viewers, stream, stock_receiver, traces, snap)
    result["redundancy"] = redundancy
    return result


async def _measure(world: World, emulator: Emulator, link: str, profile: LinkProfile,
                   viewers: int, seconds: float, stream: str,
                   stock_receiver: bool, redundancy: str) -> tuple[list[Trace], Snapshot]:
    bus = BenchBus.start()
    runtime = bus.runtime
    address = world.wans[0].vehicle_address
    token_file = runtime / "uplink.token"
    token_file.write_text(TOKEN + "\n")
    config = vehicle_config(runtime, link, profile, f"{address}:{HTTP_PORT}", stream != "main",
                            redundancy)
    procs = Processes(runtime, prefix=netns.exec_prefix(world.vehicle))
    api = VehicleApi(world.vehicle, f"http://{address}:{HTTP_PORT}", TOKEN)
    centre: CentreViewers | None = None
    try:
        await procs.start("sim-camera", "sim", "camera", "--name", CAMERA, "--port",
                          str(RTSP_PORT), "--live")
        await procs.start("camera", "run", f"camera@{CAMERA}", "--config", str(config))
        uplink = await procs.start("uplink", "run", "uplink", "--config", str(config))
        await _wait_live(api, procs, {"main", "sub"} if stream != "main" else {"main"})
        centre = await CentreViewers.start(
            world.centre, f"http://{address}:{HTTP_PORT}/whep/{CAMERA}?profile={stream}",
            token_file, viewers, stock_receiver, runtime / "viewers.log",
            max_seconds=POSTED_WITHIN_S + seconds + 120)
        await centre.wait_posted(POSTED_WITHIN_S)
        c0, t0 = _cpu_seconds(uplink.pid), time.monotonic()
        end = t0 + seconds
        while (left := end - time.monotonic()) > 0:
            await asyncio.sleep(min(0.5, left))
            _check_running(procs)
            centre.check_running()
        cpu = (_cpu_seconds(uplink.pid) - c0) / (time.monotonic() - t0) * 100
        wall_ms = time.time_ns() // 1_000_000
        counters = emulator.counters()[link]
        try:
            state = await api.state()
        except (OSError, ValueError) as e:
            raise RuntimeError(f"the uplink's /api/state did not answer at the end of the run: "
                               f"{e}") from None
        snap = Snapshot(wall_ms, time.monotonic() - t0,
                        {s["session_id"]: s for s in state["sessions"]},
                        counters["up"], counters["down"], cpu)
        await centre.stop()
        for warning in sorted(set(centre.warnings)):
            print(f"edge: bench latency: viewers: {warning}", file=sys.stderr)
        return centre.traces, snap
    finally:
        if centre is not None:
            await centre.stop()
        await procs.stop()
        bus.stop()


def _unshown(timestamps: list[int]) -> int:
    """Frames the uplink sent that were never decoded: holes in the RTP timestamps.

    The uplink stamps live units with the camera's own spacing (a frame interval) and
    catch-up units one tick apart, so a step of k intervals is k-1 frames sent and not
    shown, whether lost on the link, unrepaired or undecodable.
    """
    step = RTP_CLOCK / FPS
    missing = 0
    for a, b in pairwise(timestamps):
        d = (b - a) % 2**32
        if 1.5 * step < d < 10 * RTP_CLOCK:  # beyond: a discontinuity, not frames
            missing += round(d / step) - 1
    return missing


def _freezes(decoded_ms: list[int], end_ms: int) -> list[int]:
    """Gaps longer than FREEZE_MS between decoded frames, up to the end of the run."""
    return [b - a for a, b in pairwise([*decoded_ms, end_ms]) if b - a > FREEZE_MS]


def _viewer(trace: Trace, snap: Snapshot) -> dict[str, Any]:
    frames = [f for f in trace.frames if f[0] <= snap.wall_ms]
    post = trace.post_wall_ms or 0
    # Pictures rendered before the first was shown arrive in one burst as the session
    # starts (the uplink's catch-up): their wait is the first frame's, reported as such.
    shown = frames[0][0] if frames else 0
    latencies = [float(t - r) for t, r, _ in frames if r is not None and r >= shown]
    freezes = _freezes([t for t, _, _ in frames], snap.wall_ms) if frames else []
    window_ms = snap.wall_ms - frames[0][0] if frames else 0
    connected = next((t for t, s in trace.states if s == "connected"), None)
    session = snap.sessions.get(trace.session_id)
    end = trace.end or {}
    survived = (session is not None and session.get("state") == "live"
                and end.get("state") == "connected" and not end.get("ended", True))
    return {
        "latencies": latencies,
        "first_frame_ms": trace.first_frame_ms,
        "connected_ms": None if connected is None or not post else connected - post,
        "decoded": len(frames),
        "catchup": sum(1 for _, r, _ in frames if r is not None and r < shown),
        "unreadable": sum(1 for _, r, _ in frames if r is None),
        "unshown": _unshown([ts for _, _, ts in frames if ts is not None]),
        "freezes": freezes,
        "freeze_pct": 100.0 if not frames else 100 * sum(freezes) / max(1, window_ms),
        "session": session or {},
        "survived": survived,
    }


def _round(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


def _result(link: str, profile: LinkProfile, seed: int, viewers: int, stream: str,
            stock_receiver: bool, traces: list[Trace], snap: Snapshot) -> dict[str, Any]:
    each = [_viewer(t, snap) for t in traces]
    sessions = [v["session"] for v in each]
    latencies = [ms for v in each for ms in v["latencies"]]
    firsts = [v["first_frame_ms"] for v in each]
    freezes = [ms for v in each for ms in v["freezes"]]

    def total(key: str) -> int:
        return sum(int(s.get(key) or 0) for s in sessions)

    def nack(key: str) -> int:
        return sum(int((s.get("nack") or {}).get(key) or 0) for s in sessions)

    retransmitted = nack("retransmitted")
    dropped = snap.up.dropped_loss + snap.up.dropped_queue + snap.up.dropped_outage
    rtts = [s["rtt_ms"] for s in sessions if s.get("rtt_ms") is not None]
    return {
        "link": link,
        "link_profile": profile.summary(),
        "seed": seed,
        "viewers": viewers,
        "seconds": round(snap.seconds, 1),
        "stream_requested": stream,
        "stream": ",".join(sorted({str(s.get("profile")) for s in sessions if s})) or None,
        "frames_measured": len(latencies),
        "p50_ms": _round(_pct(latencies, 50)) if latencies else None,
        "p95_ms": _round(_pct(latencies, 95)) if latencies else None,
        "max_ms": _round(max(latencies)) if latencies else None,
        "mean_ms": _round(statistics.fmean(latencies)) if latencies else None,
        "first_frame_ms": None if None in firsts else _round(max(firsts)),
        "first_frame_ms_each": [_round(f) for f in firsts],
        "connected_ms_each": [v["connected_ms"] for v in each],
        "frames_sent": total("frames_sent"),
        "frames_decoded": sum(v["decoded"] for v in each),
        "frames_never_shown": sum(v["unshown"] for v in each),
        "frames_dropped_in_uplink": total("frames_dropped") + total("source_lost"),
        "catchup_frames": sum(v["catchup"] for v in each),
        "unreadable_frames": sum(v["unreadable"] for v in each),
        "freezes": len(freezes),
        "freeze_s": round(sum(freezes) / 1000, 2),
        "longest_freeze_ms": max(freezes) if freezes else 0,
        "freeze_pct": round(max(v["freeze_pct"] for v in each), 2),
        "lost_on_link": snap.up.dropped_loss,
        "dropped_on_link": dropped,
        "retransmitted": retransmitted,
        "retransmits_per_loss": round(retransmitted / max(1, dropped), 2),
        "nack_suppressed": nack("suppressed"),
        "nack_over_budget": nack("over_budget"),
        "nack_missed": nack("missed"),
        "redundant_copies": sum(int((s.get("redundancy") or {}).get("copies") or 0)
                                for s in sessions),
        "copies_skipped": sum(int((s.get("redundancy") or {}).get("skipped") or 0)
                              for s in sessions),
        "rtcp_packets_lost": total("packets_lost"),
        "queue_drops": snap.up.dropped_queue,
        "queue_peak_bytes": snap.up.queue_peak_bytes,
        "queue_limit_bytes": snap.up.queue_limit_bytes,
        "lost_on_link_centre_to_vehicle": snap.down.dropped_loss,
        "paced_s": round(sum(float(s.get("paced_s") or 0) for s in sessions), 2),
        "rtt_ms": max(rtts) if rtts else None,
        "kbps": round(sum(float(s.get("kbps") or 0) for s in sessions), 1),
        "uplink_cpu_pct": round(snap.uplink_cpu_pct, 1),
        "sessions_survived": all(v["survived"] for v in each),
        "sessions_survived_each": [v["survived"] for v in each],
        "stream_text": STREAMS[stream],
        "receiver": ("aiortc, stock jitter buffer (+1 frame)" if stock_receiver
                     else "aiortc, frames released on the RTP marker")
        + f", NACK repeated every {NACK_REPEAT_S * 1000:g} ms as browsers do",
    }


def print_link_table(r: dict[str, Any]) -> None:
    def pair(a: object, b: object) -> str:
        return f"{a} / {b}"

    rows: list[tuple[str, object]] = [
        ("glass-to-glass p50 (ms)", r["p50_ms"]),
        ("glass-to-glass p95 (ms)", r["p95_ms"]),
        ("glass-to-glass max (ms)", r["max_ms"]),
        ("first frame after POST (ms, worst)", r["first_frame_ms"]),
        ("frames decoded / sent by the uplink", pair(r["frames_decoded"], r["frames_sent"])),
        ("frames never shown (sent, not decoded)", r["frames_never_shown"]),
        ("frames dropped in the uplink", r["frames_dropped_in_uplink"]),
        (f"freezes (gaps > {FREEZE_MS} ms) / total s", pair(r["freezes"], r["freeze_s"])),
        ("freeze time, worst viewer (% of run)", r["freeze_pct"]),
        ("longest freeze (ms)", r["longest_freeze_ms"]),
        ("packets lost on the air / dropped in all [1]",
         pair(r["lost_on_link"], r["dropped_on_link"])),
        ("retransmitted by the uplink (NACK)", r["retransmitted"]),
        ("retransmits per lost packet [1]", r["retransmits_per_loss"]),
        ("NACKs suppressed / over budget / missed",
         f'{r["nack_suppressed"]} / {r["nack_over_budget"]} / {r["nack_missed"]}'),
        (f"redundant copies sent / skipped ({r['redundancy']})",
         pair(r["redundant_copies"], r["copies_skipped"])),
        ("queue drops at the modem, vehicle->centre", r["queue_drops"]),
        ("modem queue peak / limit (bytes)",
         pair(r["queue_peak_bytes"], r["queue_limit_bytes"])),
        ("uplink paced (s)", r["paced_s"]),
        ("RTT by RTCP (ms)", r["rtt_ms"]),
        ("uplink CPU (% of a core)", r["uplink_cpu_pct"]),
        ("every session lasted the whole run", "yes" if r["sessions_survived"] else "NO"),
    ]
    print(f"edge bench latency --link {r['link']}: {r['viewers']} viewer(s), stream "
          f"{r['stream']} (asked {r['stream_requested']}), {r['seconds']:g} s run,\n"
          f"  link: {r['link_profile']} (seed {r['seed']})\n  viewers: {r['receiver']}")
    for name, value in rows:
        print(f"  {name:42} {'n/a' if value is None else value!s:>14}")
    print("  [1] vehicle->centre, where the video goes; retransmits per lost packet is the\n"
          "      uplink's NACK repairs / packets the emulator dropped that way (loss, full\n"
          "      modem queue, outage)")
