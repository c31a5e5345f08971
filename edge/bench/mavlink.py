"""`edge bench mavlink`: the drone link's cost, against bare pymavlink and in CPU.

Two measurements, both run by this command:

1. **Parse rate.** N seconds of K simulated drones' telemetry are recorded
   once (the simulator's own generator, no sockets), then parsed alternately
   by pymavlink's ``parse_buffer`` (the baseline) and by what a live
   ``DroneLink`` runs per received chunk (frame finder, decoder, per-vehicle
   normaliser, ACK matcher, camera discovery); see
   :func:`drivers.mavlink.bench.run_bench`. Target: ours / baseline >= 0.7.
2. **CPU of four drones at 50 Hz.** Four simulated drones, in a child
   process so their cost is not counted, stream every message type they
   have (ten, HEARTBEAT included) at 50 Hz each over UDP on 127.0.0.1: 2,000
   messages/s. This process receives them for a few seconds twice: first
   with a bare asyncio socket feeding pymavlink's ``parse_buffer`` (the
   baseline), then with a ``DroneLink`` polled for snapshots at 5 Hz, as the
   service does. Its CPU time, as a percentage of one core. Target: < 10 %.
   The vehicles are set to stream at that rate themselves (as ArduPilot's
   ``SRn_*`` parameters would), so the link asks for no rates.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from dataclasses import dataclass
from typing import Any

TARGET_RATIO = 0.7
TARGET_CPU_PCT = 10.0
CPU_DRONES = 4
CPU_HZ = 50.0
WARMUP_S = 2.0
START_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class CpuRun:
    cpu_pct: float
    msgs_per_s: float


@dataclass(frozen=True)
class CpuResult:
    drones: int
    hz: float
    seconds: float
    expected_msgs_per_s: float
    baseline: CpuRun
    edge: CpuRun


def _streamed_ids() -> list[int]:
    from drivers.sim.drone.generator import DEFAULT_RATES_HZ

    return sorted(DEFAULT_RATES_HZ)


def sims_main(port: int, drones: int, hz: float) -> None:
    """Child process: ``drones`` simulated drones streaming everything at ``hz`` to ``port``."""
    from drivers.sim.drone import SimDrone

    async def main() -> None:
        async with contextlib.AsyncExitStack() as stack:
            for i in range(drones):
                # Ticks at twice the rate, so each message can go out at `hz`.
                sim = await stack.enter_async_context(SimDrone(
                    f"udpout:127.0.0.1:{port}", sysid=i + 1, tick_hz=2 * hz,
                    home=(31.2304 + 0.001 * i, 121.4737)))
                # As a vehicle configured to stream at this rate (ArduPilot's SRn_*
                # parameters): what MAV_CMD_SET_MESSAGE_INTERVAL would set.
                for msg_id in _streamed_ids():
                    sim.generator.set_interval(msg_id, 1e6 / hz)
            await asyncio.Event().wait()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())


class _BareReceiver(asyncio.DatagramProtocol):
    """The baseline: each datagram straight into pymavlink's own parse_buffer."""

    def __init__(self) -> None:
        from drivers.mavlink.dialect import MAVLink

        self.mav = MAVLink(None)
        self.mav.robust_parsing = True
        self.messages = 0
        self.closed = asyncio.get_running_loop().create_future()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        msgs = self.mav.parse_buffer(data)
        if msgs:
            self.messages += len(msgs)


async def _cpu_window(seconds: float, count: Any, poll: Any = None) -> CpuRun:
    n0, cpu0, wall0 = count(), time.process_time(), time.monotonic()
    end = wall0 + seconds
    while time.monotonic() < end:
        await asyncio.sleep(0.2)
        if poll is not None:
            poll()
    wall = time.monotonic() - wall0
    cpu = time.process_time() - cpu0
    return CpuRun(cpu_pct=round(100.0 * cpu / wall, 2), msgs_per_s=round((count() - n0) / wall))


async def measure_cpu(seconds: float, drones: int = CPU_DRONES, hz: float = CPU_HZ) -> CpuResult:
    """This process's CPU receiving the simulated drones: bare pymavlink, then a DroneLink."""
    from drivers.mavlink import DroneLink
    from edge.runtime.processes import stop_process

    loop = asyncio.get_running_loop()
    bare = _BareReceiver()
    udp, _ = await loop.create_datagram_endpoint(lambda: bare, local_addr=("127.0.0.1", 0))
    port = udp.get_extra_info("sockname")[1]
    proc: asyncio.subprocess.Process | None = None
    link: DroneLink | None = None
    try:
        code = f"from edge.bench.mavlink import sims_main; sims_main({port}, {drones}, {hz})"
        proc = await asyncio.create_subprocess_exec(sys.executable, "-c", code,
                                                    stdin=asyncio.subprocess.DEVNULL)
        deadline = time.monotonic() + START_TIMEOUT_S
        while bare.messages < drones * hz:
            if time.monotonic() > deadline or proc.returncode is not None:
                raise RuntimeError(f"the simulated drones sent nothing in {START_TIMEOUT_S:g} s")
            await asyncio.sleep(0.1)
        await asyncio.sleep(WARMUP_S / 2)
        baseline = await _cpu_window(seconds, lambda: bare.messages)
        udp.close()
        await bare.closed  # the socket really is closed only after this: the port is free
        # Same port, same stream, now through what the drone service runs. The
        # vehicles already stream at `hz`, so the link asks for no rates.
        link = DroneLink(f"udpin:127.0.0.1:{port}", request_rates=None, discover_video=False)
        await link.start()
        while len(link.vehicles) < drones:
            if time.monotonic() > deadline + START_TIMEOUT_S:
                raise RuntimeError(f"only {len(link.vehicles)} of {drones} simulated drones "
                                   "were heard")
            await asyncio.sleep(0.1)
        await asyncio.sleep(WARMUP_S / 2)
        stats = link.connection.stats
        # polled as the service's 5 Hz publisher does
        edge = await _cpu_window(seconds, lambda: stats.frames, link.snapshot)
    finally:
        udp.close()
        if proc is not None:
            await stop_process(proc, 5)
        if link is not None:
            await link.stop()
    return CpuResult(drones=drones, hz=hz, seconds=seconds,
                     expected_msgs_per_s=round(drones * hz * len(_streamed_ids())),
                     baseline=baseline, edge=edge)


def run(seconds: float, drones: int, repeat: int, cpu_seconds: float,
        cpu_hz: float = CPU_HZ) -> dict[str, Any]:
    from drivers.mavlink.bench import run_bench

    parse = run_bench(seconds=seconds, drones=drones, repeat=repeat)
    cpu = asyncio.run(measure_cpu(cpu_seconds, hz=cpu_hz))
    ratio_ok = parse.ratio >= TARGET_RATIO
    # A starved simulator would flatter the figure; say so rather than pass.
    load_ok = cpu.edge.msgs_per_s >= 0.9 * cpu.expected_msgs_per_s
    cpu_ok = cpu.edge.cpu_pct < TARGET_CPU_PCT and load_ok

    def verdict(ok: bool) -> str:
        return "ok" if ok else "MISSED"

    label = f"CPU % of one core, {cpu.drones} drones x {cpu.hz:g} Hz live"
    print(f"{'measure':44} {'baseline (pymavlink)':>21} {'edge (parse+normalise)':>23}")
    print(f"{f'messages/s, recorded stream, best of {repeat}':44} "
          f"{parse.baseline_msgs_per_s:>21,.0f} {parse.normalise_msgs_per_s:>23,.0f}")
    print(f"{f'ratio edge/baseline, median of {repeat}':44} {'':>21} {parse.ratio:>23.3f}"
          f"   target >= {TARGET_RATIO:g}: {verdict(ratio_ok)}")
    print(f"{label:44} {cpu.baseline.cpu_pct:>21.2f} {cpu.edge.cpu_pct:>23.2f}"
          f"   target < {TARGET_CPU_PCT:g}: {verdict(cpu_ok)}")
    print(f"{'  messages/s received in that run':44} {cpu.baseline.msgs_per_s:>21,.0f} "
          f"{cpu.edge.msgs_per_s:>23,.0f}   (streamed: {cpu.expected_msgs_per_s:,.0f}"
          f"{'' if load_ok else ', too few arrived'})")
    print(f"(recorded: {parse.messages:,} messages, {parse.bytes:,} bytes, {drones} drones x "
          f"{seconds:g} s at default rates; live: every streamed message type at "
          f"{cpu.hz:g} Hz, {cpu_seconds:g} s each)")
    return {
        "bench": "mavlink",
        "ratio": parse.ratio,
        "baseline_msgs_per_s": parse.baseline_msgs_per_s,
        "edge_msgs_per_s": parse.normalise_msgs_per_s,
        "cpu_pct_4x50hz": cpu.edge.cpu_pct,
        "cpu_baseline_pct_4x50hz": cpu.baseline.cpu_pct,
        "cpu_msgs_per_s": cpu.edge.msgs_per_s,
        "cpu_expected_msgs_per_s": cpu.expected_msgs_per_s,
        "cpu_seconds": cpu.seconds,
        "cpu_hz": cpu.hz,
        "messages": parse.messages,
        "bytes": parse.bytes,
        "seconds": seconds,
        "drones": drones,
        "repeat": repeat,
        "target_ratio": TARGET_RATIO,
        "target_cpu_pct": TARGET_CPU_PCT,
        "ok": ratio_ok and cpu_ok,
    }


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("mavlink", help="MAVLink parsing against bare pymavlink; CPU of 4 drones",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=60.0,
                   help="simulated seconds of recorded telemetry to parse (default 60)")
    p.add_argument("--drones", type=int, default=4, help="drones in the recording (default 4)")
    p.add_argument("--repeat", type=int, default=9,
                   help="alternating runs; the median ratio is reported (default 9)")
    p.add_argument("--cpu-seconds", type=float, default=5.0,
                   help="length of each 4-drone CPU measurement (default 5)")
    p.add_argument("--cpu-hz", type=float, default=CPU_HZ,
                   help=f"rate of every message stream in the CPU run (default {CPU_HZ:g})")
    p.set_defaults(func=cmd_bench_mavlink)


def cmd_bench_mavlink(args: argparse.Namespace) -> int:
    from edge.cli import OperatorError

    if min(args.seconds, args.drones, args.repeat, args.cpu_seconds) <= 0 or not (
            0 < args.cpu_hz <= 100):
        raise OperatorError("--seconds, --drones, --repeat and --cpu-seconds must be positive "
                            "and --cpu-hz 0..100 (the simulator's limit)")
    result = run(args.seconds, args.drones, args.repeat, args.cpu_seconds, args.cpu_hz)
    print(json.dumps(result), flush=True)
    return 0
